#!/usr/bin/python3
"""Write, once, a full-size VAE with random weights as a diffusers folder
(config.json + diffusion_pytorch_model.safetensors, F32):

  sd-vae-random     AutoencoderKL: block_out_channels 128,256,512,512,
                    layers_per_block 2, latent 4, 32 groups, quant convs,
                    scaling 0.18215 (the sd-vae-ft-mse architecture)
  flux2-vae-random  AutoencoderKLFlux2: the same widths, layers_per_block 2,
                    latent 32, 32 groups, quant convs, mid-block attention,
                    patch_size [2,2], batch_norm_eps 1e-4 (the FLUX.2 VAE
                    architecture); bn.running_mean ~ N(0, 0.05^2), bn.running_var
                    ~ U(0.5, 2) over the 128 patchified channels,
                    bn.num_batches_tracked an I64 scalar 0, as diffusers saves it

Weights are PyTorch's default module init (seeded), so activations stay
finite; speed, not output quality, is what the benchmark measures.

Usage: /usr/bin/python3 tests/bench/make_weights.py [--model sd-vae-random|flux2-vae-random]
           [--out DIR] [--seed 0] [--force]
Default DIR: tests/bench/weights/<model> (gitignored). Skips if present.
"""
import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import torch_vae  # noqa: E402

SD_CONFIG = {
    "_class_name": "AutoencoderKL",
    "_diffusers_version": "0.30.0",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "force_upcast": True,
    "in_channels": 3,
    "latent_channels": 4,
    "latents_mean": None,
    "latents_std": None,
    "layers_per_block": 2,
    "mid_block_add_attention": True,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "scaling_factor": 0.18215,
    "shift_factor": None,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "use_post_quant_conv": True,
    "use_quant_conv": True,
}

FLUX2_CONFIG = {
    "_class_name": "AutoencoderKLFlux2",
    "_diffusers_version": "0.40.0",
    "act_fn": "silu",
    "batch_norm_eps": 0.0001,
    "batch_norm_momentum": 0.1,
    "block_out_channels": [128, 256, 512, 512],
    "decoder_block_out_channels": None,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "force_upcast": True,
    "in_channels": 3,
    "latent_channels": 32,
    "layers_per_block": 2,
    "mid_block_add_attention": True,
    "norm_num_groups": 32,
    "out_channels": 3,
    "patch_size": [2, 2],
    "sample_size": 1024,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "use_post_quant_conv": True,
    "use_quant_conv": True,
}

MODELS = {"sd-vae-random": SD_CONFIG, "flux2-vae-random": FLUX2_CONFIG}

DEFAULT_OUT = os.path.join(HERE, "weights", "sd-vae-random")
FLUX2_OUT = os.path.join(HERE, "weights", "flux2-vae-random")


def _build(name, seed):
    cfg = MODELS[name]
    torch.manual_seed(seed)
    if name == "flux2-vae-random":
        model = torch_vae.AutoencoderKLFlux2(cfg)  # torch default init, seeded
        n = model.bn.num_features
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            model.bn.running_mean.copy_(0.05 * torch.randn(n, generator=g))
            model.bn.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=g))
            model.bn.num_batches_tracked.zero_()
    else:
        model = torch_vae.AutoencoderKL(cfg)  # torch default init, seeded
    return model


def ensure_weights(out=None, seed=0, force=False, quiet=False, model="sd-vae-random"):
    if model not in MODELS:
        raise ValueError(f"model {model!r} is not known ({', '.join(MODELS)})")
    if out is None:
        out = os.path.join(HERE, "weights", model)
    st = os.path.join(out, "diffusion_pytorch_model.safetensors")
    cfg = os.path.join(out, "config.json")
    if not force and os.path.isfile(st) and os.path.isfile(cfg):
        if not quiet:
            print(f"{out}: already there, skipping")
        return out
    os.makedirs(out, exist_ok=True)
    net = _build(model, seed)
    # floating tensors as F32; bn.num_batches_tracked stays an I64 scalar
    tensors = {k: (v.detach().float() if v.is_floating_point() else v.detach()).contiguous().numpy()
               for k, v in net.state_dict().items()}
    n = sum(v.size for v in tensors.values())
    torch_vae.save_safetensors(st, tensors, {"format": "pt", "note": f"random weights, torch default init, seed {seed}"})
    with open(cfg, "w") as f:
        json.dump(MODELS[model], f, indent=2)
        f.write("\n")
    if not quiet:
        print(f"{out}: wrote {len(tensors)} tensors, {n / 1e6:.1f} M parameters (F32)")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="sd-vae-random", choices=sorted(MODELS))
    ap.add_argument("--out", default=None, help="default: tests/bench/weights/<model>")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args()
    ensure_weights(a.out, a.seed, a.force, model=a.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
