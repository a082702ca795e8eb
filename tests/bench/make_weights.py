#!/usr/bin/python3
"""Write, once, an SD-size AutoencoderKL with random weights as a diffusers
folder (config.json + diffusion_pytorch_model.safetensors, F32):
block_out_channels 128,256,512,512, layers_per_block 2, latent 4, 32 groups,
quant convs, scaling 0.18215 (the sd-vae-ft-mse architecture).

Weights are PyTorch's default module init (seeded), so activations stay
finite; speed, not output quality, is what the benchmark measures.

Usage: /usr/bin/python3 tests/bench/make_weights.py [--out DIR] [--seed 0] [--force]
Default DIR: tests/bench/weights/sd-vae-random (gitignored). Skips if present.
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

DEFAULT_OUT = os.path.join(HERE, "weights", "sd-vae-random")


def ensure_weights(out=DEFAULT_OUT, seed=0, force=False, quiet=False):
    st = os.path.join(out, "diffusion_pytorch_model.safetensors")
    cfg = os.path.join(out, "config.json")
    if not force and os.path.isfile(st) and os.path.isfile(cfg):
        if not quiet:
            print(f"{out}: already there, skipping")
        return out
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(seed)
    model = torch_vae.AutoencoderKL(SD_CONFIG)  # torch default init, seeded
    tensors = {k: v.detach().float().contiguous().numpy() for k, v in model.state_dict().items()}
    n = sum(v.size for v in tensors.values())
    torch_vae.save_safetensors(st, tensors, {"format": "pt", "note": f"random weights, torch default init, seed {seed}"})
    with open(cfg, "w") as f:
        json.dump(SD_CONFIG, f, indent=2)
        f.write("\n")
    if not quiet:
        print(f"{out}: wrote {len(tensors)} tensors, {n / 1e6:.1f} M parameters (F32)")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args()
    ensure_weights(a.out, a.seed, a.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
