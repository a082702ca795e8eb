#!/usr/bin/python3
"""PyTorch peer for the video benchmark: TAEHV (taew2_1, taew2_2, taehv, ...).

Built from stock torch.nn modules the way TAEHV's `taehv.py` builds them (see
../shared/docs/video-architectures.md section 7): two nn.Sequential stacks of
nn.Conv2d applied per frame (frames folded into the batch), ReLU, MemBlock
(conv on cat[x, past] -> ReLU -> conv -> ReLU -> conv, + skip, ReLU), TPool
(s consecutive frames concatenated on channels, 1x1 conv), TGrow (1x1 conv to
s*C, channel block j -> frame s*t+j), nn.Upsample (nearest) and the Clamp
tanh(x/3)*3 at the decoder input. Run in taehv.py's parallel mode: every
layer on all frames at once, a MemBlock's past = its input shifted by one
frame (zeros at t = 0). fp32.

The state dict uses taehv.py's keys (`encoder.N.*`, `decoder.N.*`); the
configuration is inferred from tensor shapes, not from the file name: patch
from encoder.0's input channels, latent channels from encoder.17, TPool
strides from encoder.{2,7,12}, TGrow strides from decoder.{7,13,19}.

encode(x NTCHW in [0,1]): pixel_unshuffle(p) if p > 1, pad the end with copies
of the last frame to a multiple of 4, run the encoder -> N,ceil(T/4),C,h,w.
decode(z NTCHW): run the decoder (4 frames per latent), clamp to [0,1] (unless
clamp=False), pixel_shuffle(p), drop the first 3 frames -> 4t-3 frames.

`--config taew2_1|taew2_2` builds those architectures with seeded random
weights (PyTorch default init) for benchmarking.

CLI (last stdout line is median_s=<s>):
  torch_taehv.py bench --model PATH|taew2_1|taew2_2 --op encode|decode
                 --width W --height H --frames T [--runs 3] [--warmup 1] [--threads 2]
"""
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_cli import peer_main  # noqa: E402
from torch_vae import load_safetensors, save_safetensors  # noqa: E402

REAL_CONFIGS = {
    "taew2_1": dict(patch_size=1, latent_channels=16, pool_strides=(2, 2, 1), grow_strides=(1, 2, 2)),
    "taew2_2": dict(patch_size=2, latent_channels=48, pool_strides=(2, 2, 1), grow_strides=(1, 2, 2)),
}


def conv(n_in, n_out, **kwargs):
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class Clamp(nn.Module):
    def forward(self, x):
        return torch.tanh(x / 3) * 3


class MemBlock(nn.Module):
    def __init__(self, n_in, n_out, act_func):
        super().__init__()
        self.conv = nn.Sequential(conv(n_in * 2, n_out), act_func, conv(n_out, n_out), act_func, conv(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.act = act_func

    def forward(self, x, past):
        return self.act(self.conv(torch.cat([x, past], 1)) + self.skip(x))


class TPool(nn.Module):
    def __init__(self, n_f, stride):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(n_f * stride, n_f, 1, bias=False)

    def forward(self, x):
        _nt, c, h, w = x.shape
        return self.conv(x.reshape(-1, self.stride * c, h, w))


class TGrow(nn.Module):
    def __init__(self, n_f, stride):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(n_f, n_f * stride, 1, bias=False)

    def forward(self, x):
        _nt, c, h, w = x.shape
        x = self.conv(x)
        return x.reshape(-1, c, h, w)


def apply_parallel(model, x):
    """taehv.py's parallel mode: all frames per layer; x is N,T,C,H,W."""
    n, t, c, h, w = x.shape
    x = x.reshape(n * t, c, h, w)
    for blk in model:
        if isinstance(blk, MemBlock):
            nt, c, h, w = x.shape
            t = nt // n
            _x = x.reshape(n, t, c, h, w)
            mem = F.pad(_x, (0, 0, 0, 0, 0, 0, 1, 0), value=0)[:, :t].reshape(x.shape)
            x = blk(x, mem)
        else:
            x = blk(x)
    nt, c, h, w = x.shape
    return x.view(n, nt // n, c, h, w)


class TAEHV(nn.Module):
    def __init__(self, patch_size=1, latent_channels=16, pool_strides=(2, 2, 1), grow_strides=(1, 2, 2)):
        super().__init__()
        self.patch_size = patch_size
        self.latent_channels = latent_channels
        self.image_channels = 3
        self.pool_strides = tuple(pool_strides)
        self.grow_strides = tuple(grow_strides)
        act_func = nn.ReLU(inplace=True)
        p2 = patch_size ** 2
        s = self.pool_strides
        self.encoder = nn.Sequential(
            conv(self.image_channels * p2, 64), act_func,
            TPool(64, s[0]), conv(64, 64, stride=2, bias=False),
            MemBlock(64, 64, act_func), MemBlock(64, 64, act_func), MemBlock(64, 64, act_func),
            TPool(64, s[1]), conv(64, 64, stride=2, bias=False),
            MemBlock(64, 64, act_func), MemBlock(64, 64, act_func), MemBlock(64, 64, act_func),
            TPool(64, s[2]), conv(64, 64, stride=2, bias=False),
            MemBlock(64, 64, act_func), MemBlock(64, 64, act_func), MemBlock(64, 64, act_func),
            conv(64, latent_channels),
        )
        n_f = [256, 128, 64, 64]
        g = self.grow_strides
        self.frames_to_trim = g[0] * g[1] * g[2] - 1
        self.decoder = nn.Sequential(
            Clamp(), conv(latent_channels, n_f[0]), act_func,
            MemBlock(n_f[0], n_f[0], act_func), MemBlock(n_f[0], n_f[0], act_func), MemBlock(n_f[0], n_f[0], act_func),
            nn.Upsample(scale_factor=2), TGrow(n_f[0], g[0]), conv(n_f[0], n_f[1], bias=False),
            MemBlock(n_f[1], n_f[1], act_func), MemBlock(n_f[1], n_f[1], act_func), MemBlock(n_f[1], n_f[1], act_func),
            nn.Upsample(scale_factor=2), TGrow(n_f[1], g[1]), conv(n_f[1], n_f[2], bias=False),
            MemBlock(n_f[2], n_f[2], act_func), MemBlock(n_f[2], n_f[2], act_func), MemBlock(n_f[2], n_f[2], act_func),
            nn.Upsample(scale_factor=2), TGrow(n_f[2], g[2]), conv(n_f[2], n_f[3], bias=False),
            act_func, conv(n_f[3], self.image_channels * p2),
        )

    @property
    def time_factor(self):
        s = self.pool_strides
        return s[0] * s[1] * s[2]

    def encode(self, x):
        """x: N,T,3,H,W in [0,1] -> N,ceil(T/4),C,H/8p... latents."""
        if self.patch_size > 1:
            x = F.pixel_unshuffle(x, self.patch_size)
        tf = self.time_factor
        if x.shape[1] % tf != 0:
            n_pad = tf - x.shape[1] % tf
            padding = x[:, -1:].repeat_interleave(n_pad, dim=1)
            x = torch.cat([x, padding], 1)
        return apply_parallel(self.encoder, x)

    def decode(self, z, clamp=True):
        x = apply_parallel(self.decoder, z)
        if clamp:
            x = x.clamp_(0, 1)
        if self.patch_size > 1:
            x = F.pixel_shuffle(x, self.patch_size)
        return x[:, self.frames_to_trim:]

    def latent_shape(self, batch, frames, width, height):
        f = 8 * self.patch_size
        return (batch, -(-frames // self.time_factor), self.latent_channels, height // f, width // f)


def config_from_state(state):
    """Everything from tensor shapes (doc section 7 / testdata README)."""
    w0 = state["encoder.0.weight"]
    patch = int(round(math.sqrt(w0.shape[1] / 3)))
    if 3 * patch * patch != w0.shape[1]:
        raise ValueError(f"encoder.0.weight has {w0.shape[1]} input channels: not 3*p^2")
    if "decoder.0.weight" in state:
        raise ValueError("a _super TAEHV decoder: not supported by this peer")
    latent = state["encoder.17.weight"].shape[0]
    pools = tuple(state[f"encoder.{i}.conv.weight"].shape[1] // 64 for i in (2, 7, 12))
    grows = []
    for i in (7, 13, 19):
        wt = state[f"decoder.{i}.conv.weight"]
        grows.append(wt.shape[0] // wt.shape[1])
    return dict(patch_size=patch, latent_channels=latent, pool_strides=pools, grow_strides=tuple(grows))


def load_taehv(path, seed=0):
    if path in REAL_CONFIGS:
        torch.manual_seed(seed)
        m = TAEHV(**REAL_CONFIGS[path])
        m.eval()
        return m
    state, _ = load_safetensors(path)
    cfg = config_from_state(state)
    m = TAEHV(**cfg)
    missing, unexpected = m.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    m.eval()
    return m


def save_taehv(model, out):
    tensors = {k: v.detach().half().contiguous().numpy() for k, v in model.state_dict().items()}
    save_safetensors(out, tensors, {"format": "pt"})
    return out


def clip_input(model, op, width, height, frames, g):
    """What `bench` times: encode of pixels NTCHW in [0,1], or decode of the
    latents of such a clip."""
    if op == "encode":
        return torch.rand((1, frames, 3, height, width), generator=g), model.encode
    return torch.randn(model.latent_shape(1, frames, width, height), generator=g), model.decode


def main(argv=None):
    return peer_main(argv, __doc__, REAL_CONFIGS, load_taehv,
                     lambda config, seed, out: save_taehv(load_taehv(config, seed), out), clip_input,
                     model_help="taew2_1, taew2_2 (random weights) or a .safetensors path",
                     write_help="write a real config with random weights (F16, taehv.py keys)")


if __name__ == "__main__":
    sys.exit(main())
