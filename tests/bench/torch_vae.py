#!/usr/bin/python3
"""PyTorch peer for the gst-vae speed benchmark.

AutoencoderKL, AutoencoderKLFlux2 and AutoencoderTiny (TAESD family,
including TAEF2's `.pool.` mid-block GroupNorm blocks) built from stock
torch.nn modules exactly the way diffusers v0.30 (v0.40 for
AutoencoderKLFlux2, the same blocks) and TAESD's reference taesd.py build
them: nn.Conv2d,
nn.GroupNorm(eps=1e-6), nn.SiLU, ResnetBlock2D, Downsample2D (F.pad(0,1,0,1)
then a stride-2 conv), Upsample2D (F.interpolate nearest, then conv), and the
mid-block Attention as diffusers' AttnProcessor runs it on torch 1.13 (no
SDPA: group_norm, to_q/to_k/to_v Linear on [B,HW,C], baddbmm with scale
1/sqrt(C), softmax, bmm, to_out Linear, residual). No hand fusion; fp32.

Weights: a diffusers folder (config.json + diffusion_pytorch_model.safetensors,
F32/F16/BF16, widened to float32) or TAESD single files
(`*_encoder.safetensors` / `*_decoder.safetensors`, nn.Sequential keys).
safetensors is parsed with numpy (no safetensors package needed).

Conventions of `VaePeer.encode` / `decode` follow the reference files in
../shared/testdata/reference:
  KL:                      encode([-1,1] image) -> latent mean; decode(mean) -> [-1,1]
  AutoencoderTiny (diffusers folder): [-1,1] in/out, raw latents
  TAESD single files:      [0,1] in/out (raw taesd.py layers), raw latents
  AutoencoderKLFlux2 (../shared/testdata/reference-flux2): [-1,1] in/out,
      encode -> `latent_normalized` (mode, 2x2 patches, BatchNorm running
      statistics: the FLUX.2 pipeline's code), decode(latent_normalized);
      encode_raw / decode_raw are the bare VAE (`latent_mean`, `decoded`)

CLI (same shape as `vae-tool bench`; last stdout line is median_s=<s>):
  torch_vae.py bench --model PATH --op encode|decode --width W --height H
               [--batch 1] [--runs 3] [--threads 2]

GPU mode (additive; the CPU defaults above are unchanged): `--device cuda
--dtype float16 --channels-last` moves the model and input there, runs the
mid-block attention the way diffusers' AttnProcessor2_0 does on torch 2.x
(F.scaled_dot_product_attention, heads=1), times each run with CUDA events
after the warm-up and prints `peak_mib=` (torch.cuda.max_memory_allocated,
reset before the case) and `device_ms=` (median per batch) before median_s.
`--cudnn-benchmark` sets torch.backends.cudnn.benchmark=True (default: left
at PyTorch's default, False). tests/bench/torch_gpu_bench.py runs many cases
in one process with these functions (bench_device).
"""
import argparse
import glob
import json
import os
import re
import statistics
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# --------------------------------------------------------------------------
# safetensors via numpy
# --------------------------------------------------------------------------

_NP_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U8": np.uint8, "BOOL": np.bool_,
}


def read_safetensors_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    return n, header


def load_safetensors(path, as_torch=True):
    """Return ({name: array/tensor}, metadata). BF16 is widened to float32."""
    n, header = read_safetensors_header(path)
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    with open(path, "rb") as f:
        f.seek(8 + n)
        blob = f.read()
    for name, info in header.items():
        b, e = info["data_offsets"]
        raw = blob[b:e]
        dt = info["dtype"]
        shape = info["shape"]
        if dt == "BF16":
            u16 = np.frombuffer(raw, dtype="<u2").astype(np.uint32)
            arr = (u16 << 16).view(np.float32).reshape(shape)
        else:
            arr = np.frombuffer(raw, dtype=np.dtype(_NP_DTYPES[dt]).newbyteorder("<")).reshape(shape)
        arr = np.array(arr)  # own, writable copy
        out[name] = torch.from_numpy(arr) if as_torch else arr
    return out, meta


def save_safetensors(path, tensors, metadata=None):
    """Write {name: np.ndarray float32/float16/...} as safetensors."""
    rev = {np.dtype(v): k for k, v in _NP_DTYPES.items()}
    header = {}
    offset = 0
    arrays = []
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        nbytes = arr.nbytes
        header[name] = {"dtype": rev[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + nbytes]}
        arrays.append(arr)
        offset += nbytes
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for arr in arrays:
            f.write(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())
    os.replace(tmp, path)


# --------------------------------------------------------------------------
# AutoencoderKL, diffusers v0.30 structure
# --------------------------------------------------------------------------

class ResnetBlock2D(nn.Module):
    """diffusers ResnetBlock2D with temb=None, output_scale_factor=1."""

    def __init__(self, in_channels, out_channels, groups, eps=1e-6):
        super().__init__()
        self.norm1 = nn.GroupNorm(num_groups=groups, num_channels=in_channels, eps=eps, affine=True)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.norm2 = nn.GroupNorm(num_groups=groups, num_channels=out_channels, eps=eps, affine=True)
        self.dropout = nn.Dropout(0.0)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.nonlinearity = nn.SiLU()
        self.conv_shortcut = None
        if in_channels != out_channels:
            self.conv_shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0, bias=True)
        self.output_scale_factor = 1.0

    def forward(self, input_tensor):
        hidden_states = input_tensor
        hidden_states = self.norm1(hidden_states)
        hidden_states = self.nonlinearity(hidden_states)
        hidden_states = self.conv1(hidden_states)
        hidden_states = self.norm2(hidden_states)
        hidden_states = self.nonlinearity(hidden_states)
        hidden_states = self.dropout(hidden_states)
        hidden_states = self.conv2(hidden_states)
        if self.conv_shortcut is not None:
            input_tensor = self.conv_shortcut(input_tensor)
        return (input_tensor + hidden_states) / self.output_scale_factor


class Downsample2D(nn.Module):
    """diffusers Downsample2D(use_conv=True, padding=0): pad (0,1,0,1), conv s2."""

    def __init__(self, channels, out_channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, out_channels, kernel_size=3, stride=2, padding=0)

    def forward(self, hidden_states):
        hidden_states = F.pad(hidden_states, (0, 1, 0, 1), mode="constant", value=0)
        return self.conv(hidden_states)


class Upsample2D(nn.Module):
    """diffusers Upsample2D(use_conv=True): nearest x2, conv3x3 pad 1."""

    def __init__(self, channels, out_channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, out_channels, kernel_size=3, padding=1)

    def forward(self, hidden_states):
        if hidden_states.shape[0] >= 64:
            hidden_states = hidden_states.contiguous()
        hidden_states = F.interpolate(hidden_states, scale_factor=2.0, mode="nearest")
        return self.conv(hidden_states)


class Attention(nn.Module):
    """diffusers Attention(heads=1, dim_head=C, group norm, residual,
    rescale_output_factor=1, upcast_softmax) run by AttnProcessor (torch 1.13
    has no F.scaled_dot_product_attention, so AttnProcessor2_0 is unused)."""

    def __init__(self, channels, groups, eps=1e-6):
        super().__init__()
        self.heads = 1
        self.scale = channels ** -0.5
        self.group_norm = nn.GroupNorm(num_channels=channels, num_groups=groups, eps=eps, affine=True)
        self.to_q = nn.Linear(channels, channels, bias=True)
        self.to_k = nn.Linear(channels, channels, bias=True)
        self.to_v = nn.Linear(channels, channels, bias=True)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels, bias=True), nn.Dropout(0.0)])
        self.rescale_output_factor = 1.0
        # GPU mode (use_sdpa_attention): run as AttnProcessor2_0 does.
        self.use_sdpa = False

    def head_to_batch_dim(self, tensor):
        b, s, d = tensor.shape
        h = self.heads
        tensor = tensor.reshape(b, s, h, d // h).permute(0, 2, 1, 3)
        return tensor.reshape(b * h, s, d // h)

    def batch_to_head_dim(self, tensor):
        h = self.heads
        b, s, d = tensor.shape
        tensor = tensor.reshape(b // h, h, s, d).permute(0, 2, 1, 3)
        return tensor.reshape(b // h, s, d * h)

    def get_attention_scores(self, query, key):
        baddbmm_input = torch.empty(query.shape[0], query.shape[1], key.shape[1],
                                    dtype=query.dtype, device=query.device)
        attention_scores = torch.baddbmm(baddbmm_input, query, key.transpose(-1, -2),
                                         beta=0, alpha=self.scale)
        attention_scores = attention_scores.float()  # upcast_softmax (no-op in fp32)
        attention_probs = attention_scores.softmax(dim=-1)
        return attention_probs.to(query.dtype)

    def forward_sdpa(self, hidden_states):
        """diffusers AttnProcessor2_0 (torch >= 2.0) for this block: the same
        group norm and linears, then F.scaled_dot_product_attention on
        [B, heads, HW, C/heads] (default scale 1/sqrt(head_dim) == self.scale)."""
        residual = hidden_states
        batch_size, channel, height, width = hidden_states.shape
        hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        hidden_states = self.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = self.to_q(hidden_states)
        key = self.to_k(hidden_states)
        value = self.to_v(hidden_states)
        inner_dim = key.shape[-1]
        head_dim = inner_dim // self.heads
        query = query.view(batch_size, -1, self.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, self.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, self.heads, head_dim).transpose(1, 2)
        hidden_states = F.scaled_dot_product_attention(query, key, value, attn_mask=None,
                                                       dropout_p=0.0, is_causal=False)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, self.heads * head_dim)
        hidden_states = hidden_states.to(query.dtype)
        hidden_states = self.to_out[0](hidden_states)
        hidden_states = self.to_out[1](hidden_states)
        hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        hidden_states = hidden_states + residual
        return hidden_states / self.rescale_output_factor

    def forward(self, hidden_states):
        if self.use_sdpa:
            return self.forward_sdpa(hidden_states)
        residual = hidden_states
        batch_size, channel, height, width = hidden_states.shape
        hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        hidden_states = self.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = self.to_q(hidden_states)
        key = self.to_k(hidden_states)
        value = self.to_v(hidden_states)
        query = self.head_to_batch_dim(query)
        key = self.head_to_batch_dim(key)
        value = self.head_to_batch_dim(value)
        attention_probs = self.get_attention_scores(query, key)
        hidden_states = torch.bmm(attention_probs, value)
        hidden_states = self.batch_to_head_dim(hidden_states)
        hidden_states = self.to_out[0](hidden_states)
        hidden_states = self.to_out[1](hidden_states)
        hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        hidden_states = hidden_states + residual
        return hidden_states / self.rescale_output_factor


class UNetMidBlock2D(nn.Module):
    def __init__(self, channels, groups, add_attention=True):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(channels, channels, groups),
                                      ResnetBlock2D(channels, channels, groups)])
        self.attentions = nn.ModuleList([Attention(channels, groups) if add_attention else None])
        self.add_attention = add_attention

    def forward(self, hidden_states):
        hidden_states = self.resnets[0](hidden_states)
        for attn, resnet in zip(self.attentions, self.resnets[1:]):
            if attn is not None:
                hidden_states = attn(hidden_states)
            hidden_states = resnet(hidden_states)
        return hidden_states


class DownEncoderBlock2D(nn.Module):
    def __init__(self, in_channels, out_channels, num_layers, groups, add_downsample):
        super().__init__()
        self.resnets = nn.ModuleList([
            ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, groups)
            for i in range(num_layers)])
        self.downsamplers = nn.ModuleList([Downsample2D(out_channels, out_channels)]) if add_downsample else None

    def forward(self, hidden_states):
        for resnet in self.resnets:
            hidden_states = resnet(hidden_states)
        if self.downsamplers is not None:
            for d in self.downsamplers:
                hidden_states = d(hidden_states)
        return hidden_states


class UpDecoderBlock2D(nn.Module):
    def __init__(self, in_channels, out_channels, num_layers, groups, add_upsample):
        super().__init__()
        self.resnets = nn.ModuleList([
            ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, groups)
            for i in range(num_layers)])
        self.upsamplers = nn.ModuleList([Upsample2D(out_channels, out_channels)]) if add_upsample else None

    def forward(self, hidden_states):
        for resnet in self.resnets:
            hidden_states = resnet(hidden_states)
        if self.upsamplers is not None:
            for u in self.upsamplers:
                hidden_states = u(hidden_states)
        return hidden_states


class Encoder(nn.Module):
    def __init__(self, in_channels, out_channels, block_out_channels, layers_per_block,
                 norm_num_groups, mid_block_add_attention=True, double_z=True):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], kernel_size=3, stride=1, padding=1)
        self.down_blocks = nn.ModuleList([])
        output_channel = block_out_channels[0]
        for i in range(len(block_out_channels)):
            input_channel = output_channel
            output_channel = block_out_channels[i]
            is_final_block = i == len(block_out_channels) - 1
            self.down_blocks.append(DownEncoderBlock2D(input_channel, output_channel, layers_per_block,
                                                       norm_num_groups, not is_final_block))
        self.mid_block = UNetMidBlock2D(block_out_channels[-1], norm_num_groups, mid_block_add_attention)
        self.conv_norm_out = nn.GroupNorm(num_channels=block_out_channels[-1], num_groups=norm_num_groups, eps=1e-6)
        self.conv_act = nn.SiLU()
        conv_out_channels = 2 * out_channels if double_z else out_channels
        self.conv_out = nn.Conv2d(block_out_channels[-1], conv_out_channels, 3, padding=1)

    def forward(self, sample):
        sample = self.conv_in(sample)
        for down_block in self.down_blocks:
            sample = down_block(sample)
        sample = self.mid_block(sample)
        sample = self.conv_norm_out(sample)
        sample = self.conv_act(sample)
        sample = self.conv_out(sample)
        return sample


class Decoder(nn.Module):
    def __init__(self, in_channels, out_channels, block_out_channels, layers_per_block,
                 norm_num_groups, mid_block_add_attention=True):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, block_out_channels[-1], kernel_size=3, stride=1, padding=1)
        self.mid_block = UNetMidBlock2D(block_out_channels[-1], norm_num_groups, mid_block_add_attention)
        self.up_blocks = nn.ModuleList([])
        reversed_block_out_channels = list(reversed(block_out_channels))
        output_channel = reversed_block_out_channels[0]
        for i in range(len(block_out_channels)):
            prev_output_channel = output_channel
            output_channel = reversed_block_out_channels[i]
            is_final_block = i == len(block_out_channels) - 1
            self.up_blocks.append(UpDecoderBlock2D(prev_output_channel, output_channel, layers_per_block + 1,
                                                   norm_num_groups, not is_final_block))
        self.conv_norm_out = nn.GroupNorm(num_channels=block_out_channels[0], num_groups=norm_num_groups, eps=1e-6)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(block_out_channels[0], out_channels, 3, padding=1)

    def forward(self, z):
        sample = self.conv_in(z)
        upscale_dtype = next(iter(self.up_blocks.parameters())).dtype
        sample = self.mid_block(sample)
        sample = sample.to(upscale_dtype)
        for up_block in self.up_blocks:
            sample = up_block(sample)
        sample = self.conv_norm_out(sample)
        sample = self.conv_act(sample)
        sample = self.conv_out(sample)
        return sample


class AutoencoderKL(nn.Module):
    def __init__(self, config):
        super().__init__()
        c = config
        boc = list(c.get("block_out_channels", [64]))
        lpb = c.get("layers_per_block", 1)
        lat = c.get("latent_channels", 4)
        groups = c.get("norm_num_groups", 32)
        attn = c.get("mid_block_add_attention", True)
        # diffusers >= 0.38 (AutoencoderKLFlux2): a decoder with its own widths
        dboc = list(c.get("decoder_block_out_channels") or boc)
        self.encoder = Encoder(c.get("in_channels", 3), lat, boc, lpb, groups, attn, double_z=True)
        self.decoder = Decoder(lat, c.get("out_channels", 3), dboc, lpb, groups, attn)
        uq = c.get("use_quant_conv", True)
        upq = c.get("use_post_quant_conv", True)
        self.quant_conv = nn.Conv2d(2 * lat, 2 * lat, 1) if uq else None
        self.post_quant_conv = nn.Conv2d(lat, lat, 1) if upq else None
        self.config = config

    def encode_moments(self, x):
        h = self.encoder(x)
        if self.quant_conv is not None:
            h = self.quant_conv(h)
        return h

    def encode(self, x):
        """Latent mean (DiagonalGaussianDistribution.mode())."""
        moments = self.encode_moments(x)
        mean, logvar = torch.chunk(moments, 2, dim=1)
        return mean

    def encode_mean_logvar(self, x):
        moments = self.encode_moments(x)
        mean, logvar = torch.chunk(moments, 2, dim=1)
        return mean, torch.clamp(logvar, -30.0, 20.0)

    def decode(self, z):
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        return self.decoder(z)


class AutoencoderKLFlux2(AutoencoderKL):
    """diffusers v0.40 AutoencoderKLFlux2 (the AutoencoderKL network, 32
    latent channels, decoder_block_out_channels, and `bn`: BatchNorm2d over
    the 2x2-patchified latents, affine=False, used only for its running
    statistics) plus the FLUX.2 pipeline's latent code (Flux2Pipeline.
    _encode_vae_image, _patchify_latents, _unpatchify_latents and the decode
    branch of __call__; the [B, h*w, 128] packing is layout only, left out):

      encode(x) = (patchify(mode(x)) - running_mean) / sqrt(running_var + eps)
      decode(z) = vae.decode(unpatchify(z * sqrt(running_var + eps) + running_mean))

    patchify: view(b, c, h/2, 2, w/2, 2).permute(0, 1, 3, 5, 2, 4), channel
    c*4 + dy*2 + dx. encode_raw / decode_raw / encode_mean_logvar are the bare
    VAE (32 channels at 8x)."""

    def __init__(self, config):
        super().__init__(config)
        ps = config.get("patch_size", [2, 2])
        ps = list(ps) if isinstance(ps, (list, tuple)) else [ps, ps]
        self.patch_size = tuple(ps)
        lat = config.get("latent_channels", 32)
        self.bn_eps = config.get("batch_norm_eps", 1e-4)
        self.bn = nn.BatchNorm2d(ps[0] * ps[1] * lat, eps=self.bn_eps,
                                 momentum=config.get("batch_norm_momentum", 0.1),
                                 affine=False, track_running_stats=True)

    def patchify(self, latents):
        b, c, h, w = latents.shape
        latents = latents.view(b, c, h // 2, 2, w // 2, 2)
        latents = latents.permute(0, 1, 3, 5, 2, 4)
        return latents.reshape(b, c * 4, h // 2, w // 2)

    def unpatchify(self, latents):
        b, c, h, w = latents.shape
        latents = latents.reshape(b, c // (2 * 2), 2, 2, h, w)
        latents = latents.permute(0, 1, 4, 2, 5, 3)
        return latents.reshape(b, c // (2 * 2), h * 2, w * 2)

    def _bn_mean_std(self, like):
        mean = self.bn.running_mean.view(1, -1, 1, 1).to(like.device, like.dtype)
        std = torch.sqrt(self.bn.running_var.view(1, -1, 1, 1) + self.bn_eps).to(like.device, like.dtype)
        return mean, std

    def encode_raw(self, x):
        return AutoencoderKL.encode(self, x)

    def decode_raw(self, z):
        return AutoencoderKL.decode(self, z)

    def normalize(self, latents):
        latents = self.patchify(latents)
        mean, std = self._bn_mean_std(latents)
        return (latents - mean) / std

    def denormalize(self, latents):
        mean, std = self._bn_mean_std(latents)
        return self.unpatchify(latents * std + mean)

    def encode(self, x):
        """Pixels [-1,1] -> normalised latents [B, 4*lat, H/16, W/16]."""
        return self.normalize(self.encode_raw(x))

    def decode(self, z):
        """Normalised latents -> pixels (not clamped)."""
        return self.decode_raw(self.denormalize(z))


# --------------------------------------------------------------------------
# AutoencoderTiny / TAESD (taesd.py + diffusers AutoencoderTinyBlock)
# --------------------------------------------------------------------------

class TinyBlock(nn.Module):
    """taesd.py Block == diffusers AutoencoderTinyBlock; with use_midblock_gn
    (TAEF2) a pre-step x = x + pool(x), pool = conv1x1(n->4n, no bias),
    GroupNorm(4, 4n) (torch default eps 1e-5, as taesd.py), ReLU,
    conv1x1(4n->n, no bias)."""

    def __init__(self, n_in, n_out, use_midblock_gn=False):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(n_in, n_out, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(n_out, n_out, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(n_out, n_out, 3, padding=1))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.fuse = nn.ReLU()
        self.pool = None
        if use_midblock_gn:
            n_gn = n_in * 4
            self.pool = nn.Sequential(nn.Conv2d(n_in, n_gn, 1, bias=False), nn.GroupNorm(4, n_gn),
                                      nn.ReLU(inplace=True), nn.Conv2d(n_gn, n_in, 1, bias=False))

    def forward(self, x):
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + self.skip(x))


class Clamp(nn.Module):
    def forward(self, x):
        return torch.tanh(x / 3) * 3


def taesd_encoder(latent_channels, use_midblock_gn=False):
    """taesd.py Encoder (same layer list as diffusers EncoderTiny defaults)."""
    def conv(i, o, **kw):
        return nn.Conv2d(i, o, 3, padding=1, **kw)
    mb = dict(use_midblock_gn=use_midblock_gn)
    return nn.Sequential(
        conv(3, 64), TinyBlock(64, 64),
        conv(64, 64, stride=2, bias=False), TinyBlock(64, 64), TinyBlock(64, 64), TinyBlock(64, 64),
        conv(64, 64, stride=2, bias=False), TinyBlock(64, 64), TinyBlock(64, 64), TinyBlock(64, 64),
        conv(64, 64, stride=2, bias=False), TinyBlock(64, 64, **mb), TinyBlock(64, 64, **mb), TinyBlock(64, 64, **mb),
        conv(64, latent_channels),
    )


def taesd_decoder(latent_channels, use_midblock_gn=False):
    """taesd.py Decoder; index 0 is the Clamp."""
    def conv(i, o, **kw):
        return nn.Conv2d(i, o, 3, padding=1, **kw)
    mb = dict(use_midblock_gn=use_midblock_gn)
    return nn.Sequential(
        Clamp(), conv(latent_channels, 64), nn.ReLU(),
        TinyBlock(64, 64, **mb), TinyBlock(64, 64, **mb), TinyBlock(64, 64, **mb),
        nn.Upsample(scale_factor=2), conv(64, 64, bias=False),
        TinyBlock(64, 64), TinyBlock(64, 64), TinyBlock(64, 64), nn.Upsample(scale_factor=2), conv(64, 64, bias=False),
        TinyBlock(64, 64), TinyBlock(64, 64), TinyBlock(64, 64), nn.Upsample(scale_factor=2), conv(64, 64, bias=False),
        TinyBlock(64, 64), conv(64, 3),
    )


class EncoderTiny(nn.Module):
    """diffusers EncoderTiny: maps [-1,1] -> [0,1] then the TAESD layers."""

    def __init__(self, in_channels, out_channels, num_blocks, block_out_channels):
        super().__init__()
        layers = []
        for i, num_block in enumerate(num_blocks):
            num_channels = block_out_channels[i]
            if i == 0:
                layers.append(nn.Conv2d(in_channels, num_channels, kernel_size=3, padding=1))
            else:
                layers.append(nn.Conv2d(num_channels, num_channels, kernel_size=3, padding=1, stride=2, bias=False))
            for _ in range(num_block):
                layers.append(TinyBlock(num_channels, num_channels))
        layers.append(nn.Conv2d(block_out_channels[-1], out_channels, kernel_size=3, padding=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x.add(1).div(2))


class DecoderTiny(nn.Module):
    """diffusers DecoderTiny: tanh clamp, TAESD layers, maps [0,1] -> [-1,1]."""

    def __init__(self, in_channels, out_channels, num_blocks, block_out_channels, upsampling_scaling_factor=2,
                 upsample_fn="nearest"):
        super().__init__()
        layers = [nn.Conv2d(in_channels, block_out_channels[0], kernel_size=3, padding=1), nn.ReLU()]
        for i, num_block in enumerate(num_blocks):
            is_final_block = i == (len(num_blocks) - 1)
            num_channels = block_out_channels[i]
            for _ in range(num_block):
                layers.append(TinyBlock(num_channels, num_channels))
            if not is_final_block:
                layers.append(nn.Upsample(scale_factor=upsampling_scaling_factor, mode=upsample_fn))
            conv_out_channel = num_channels if not is_final_block else out_channels
            layers.append(nn.Conv2d(num_channels, conv_out_channel, kernel_size=3, padding=1, bias=is_final_block))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        x = torch.tanh(x / 3) * 3
        x = self.layers(x)
        return x.mul(2).sub(1)


class AutoencoderTiny(nn.Module):
    """diffusers AutoencoderTiny: encode/decode return raw latents / [-1,1] images."""

    def __init__(self, config):
        super().__init__()
        c = config
        enc_boc = c.get("encoder_block_out_channels", [64, 64, 64, 64])
        dec_boc = c.get("decoder_block_out_channels", [64, 64, 64, 64])
        lat = c.get("latent_channels", 4)
        self.encoder = EncoderTiny(c.get("in_channels", 3), lat, c.get("num_encoder_blocks", [1, 3, 3, 3]), enc_boc)
        self.decoder = DecoderTiny(lat, c.get("out_channels", 3), c.get("num_decoder_blocks", [3, 3, 3, 1]), dec_boc,
                                   c.get("upsampling_scaling_factor", 2), c.get("upsample_fn", "nearest"))
        self.config = config

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        return self.decoder(z)


class TAESD(nn.Module):
    """TAESD reference (taesd.py) layers from single files; [0,1] images."""

    def __init__(self, latent_channels, use_midblock_gn):
        super().__init__()
        self.encoder = taesd_encoder(latent_channels, use_midblock_gn)
        self.decoder = taesd_decoder(latent_channels, use_midblock_gn)
        self.config = {"latent_channels": latent_channels, "use_midblock_gn": use_midblock_gn}

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        return self.decoder(z)


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------

def _load_strict(module, state, what):
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"{what}: missing keys {missing[:8]}, unexpected keys {unexpected[:8]}")


def _find_taesd_files(path):
    if os.path.isfile(path):
        d = os.path.dirname(path) or "."
        base = os.path.basename(path)
        for suf in ("_encoder.safetensors", "_decoder.safetensors"):
            if base.endswith(suf):
                stem = base[: -len(suf)]
                return (os.path.join(d, stem + "_encoder.safetensors"),
                        os.path.join(d, stem + "_decoder.safetensors"))
        raise ValueError(f"{path}: not a *_encoder/_decoder.safetensors file")
    enc = sorted(glob.glob(os.path.join(path, "*_encoder.safetensors")))
    dec = sorted(glob.glob(os.path.join(path, "*_decoder.safetensors")))
    if len(enc) != 1 or len(dec) != 1:
        raise ValueError(f"{path}: expected one *_encoder.safetensors and one *_decoder.safetensors")
    return enc[0], dec[0]


def model_kind(path):
    """'kl', 'flux2' (AutoencoderKLFlux2 with the FLUX.2 latent code), 'tiny'
    (diffusers AutoencoderTiny) or 'taesd' (single files)."""
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json")):
        with open(os.path.join(path, "config.json")) as f:
            cls = json.load(f).get("_class_name", "AutoencoderKL")
        return {"AutoencoderTiny": "tiny", "AutoencoderKLFlux2": "flux2"}.get(cls, "kl")
    return "taesd"


def load_config(path):
    """Architecture description for any kind (used by the MAC counter)."""
    kind = model_kind(path)
    if kind in ("kl", "flux2", "tiny"):
        with open(os.path.join(path, "config.json")) as f:
            cfg = json.load(f)
        cfg["_kind"] = kind
        return cfg
    enc, dec = _find_taesd_files(path)
    _, h = read_safetensors_header(enc)
    lat = h["14.weight"]["shape"][0]
    pool = any(".pool." in k for k in h)
    return {"_kind": "taesd", "latent_channels": lat, "use_midblock_gn": pool}


def load_vae(path):
    """Build the peer module for PATH and load its weights (float32, eval)."""
    kind = model_kind(path)
    if kind in ("kl", "flux2"):
        with open(os.path.join(path, "config.json")) as f:
            cfg = json.load(f)
        model = AutoencoderKLFlux2(cfg) if kind == "flux2" else AutoencoderKL(cfg)
        state, _ = load_safetensors(os.path.join(path, "diffusion_pytorch_model.safetensors"))
        state = {k: v.float() for k, v in state.items()}
        # diffusers converts very old attention names on load; accept them too
        ren = {".query.": ".to_q.", ".key.": ".to_k.", ".value.": ".to_v.", ".proj_attn.": ".to_out.0."}
        fixed = {}
        for k, v in state.items():
            for a, b in ren.items():
                if a in k:
                    k = k.replace(a, b)
            fixed[k] = v
        _load_strict(model, fixed, path)
    elif kind == "tiny":
        with open(os.path.join(path, "config.json")) as f:
            cfg = json.load(f)
        model = AutoencoderTiny(cfg)
        state, _ = load_safetensors(os.path.join(path, "diffusion_pytorch_model.safetensors"))
        _load_strict(model, {k: v.float() for k, v in state.items()}, path)
    else:
        enc_path, dec_path = _find_taesd_files(path)
        enc_state, _ = load_safetensors(enc_path)
        dec_state, _ = load_safetensors(dec_path)
        lat = enc_state["14.weight"].shape[0]
        pool = any(".pool." in k for k in list(enc_state) + list(dec_state))
        model = TAESD(lat, pool)
        _load_strict(model.encoder, {k: v.float() for k, v in enc_state.items()}, enc_path)
        _load_strict(model.decoder, {k: v.float() for k, v in dec_state.items()}, dec_path)
    model = model.float().eval()
    model.kind = kind
    return model


def latent_shape(model, batch, width, height):
    """What model.decode takes (FLUX.2: the normalised, patchified latents)."""
    if model.kind == "flux2":
        lat = model.config.get("latent_channels", 32)
        p = model.patch_size
        f = 2 ** (len(model.config.get("block_out_channels", [64])) - 1)
        return (batch, lat * p[0] * p[1], height // (f * p[0]), width // (f * p[1]))
    if model.kind == "kl":
        lat = model.config.get("latent_channels", 4)
        f = 2 ** (len(model.config.get("block_out_channels", [64])) - 1)
    else:
        lat = model.config.get("latent_channels", 4)
        f = 8
    return (batch, lat, height // f, width // f)


# --------------------------------------------------------------------------
# Benchmark CLI
# --------------------------------------------------------------------------

def torch_blas():
    """Which BLAS torch's Linear/bmm/baddbmm go through (convolutions use
    oneDNN). Debian's python3-torch is built with BLAS_INFO=generic, i.e.
    whatever libblas.so.3 resolves to (netlib reference BLAS by default)."""
    info = "?"
    m = re.search(r"BLAS_INFO=([^,\s]+)", torch.__config__.show())
    if m:
        info = m.group(1)
    libs = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                base = os.path.basename(path)
                if re.match(r"lib(open)?blas|libblis|libmkl_rt|libflexiblas", base):
                    libs.add(os.path.realpath(path))
    except OSError:
        pass
    return "BLAS_INFO=%s, %s" % (info, ", ".join(sorted(libs)) or "no libblas mapped")


def bench(model_path, op, width, height, batch, runs, threads, warmup=1, seed=0, profile=False):
    torch.set_num_threads(threads)
    model = load_vae(model_path)
    g = torch.Generator().manual_seed(seed)
    if op == "encode":
        x = torch.rand((batch, 3, height, width), generator=g)
        if model.kind != "taesd":
            x = x * 2 - 1
        fn = model.encode
    elif op == "decode":
        x = torch.randn(latent_shape(model, batch, width, height), generator=g)
        fn = model.decode
    else:
        raise ValueError(op)
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            fn(x)
        for _ in range(runs):
            t0 = time.perf_counter()
            y = fn(x)
            times.append(time.perf_counter() - t0)
        if profile:
            with torch.autograd.profiler.profile() as prof:
                fn(x)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10), file=sys.stderr)
    if not torch.isfinite(y).all():
        print("warning: non-finite output", file=sys.stderr)
    return times


# --------------------------------------------------------------------------
# GPU mode (tests/device/run.sh): fp16, channels_last, SDPA attention,
# CUDA-event timing and allocator peak. The CPU benchmark above is unchanged.
# --------------------------------------------------------------------------

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
           "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def parse_dtype(name):
    try:
        return _DTYPES[name.lower()]
    except KeyError:
        raise ValueError(f"dtype {name!r} is not known (float32, float16, bfloat16)")


def has_sdpa():
    return hasattr(F, "scaled_dot_product_attention")


def use_sdpa_attention(model, on=True):
    """Switch every mid-block Attention to the AttnProcessor2_0 path; returns
    how many were switched."""
    n = 0
    for m in model.modules():
        if isinstance(m, Attention):
            m.use_sdpa = on
            n += 1
    return n


def to_device(model, device, dtype, channels_last=False, sdpa=False):
    """The peer as diffusers users run it on a GPU: model.to(device, dtype),
    optionally channels_last, attention through SDPA."""
    model = model.to(device=device, dtype=dtype)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if sdpa:
        use_sdpa_attention(model)
    return model


def make_input(model, op, width, height, batch, device, dtype, channels_last=False, seed=0):
    """Random input like bench(): drawn on the CPU (same values everywhere),
    then moved. Encode: images in the model's range; decode: N(0,1) latents."""
    g = torch.Generator().manual_seed(seed)
    if op == "encode":
        x = torch.rand((batch, 3, height, width), generator=g)
        if model.kind != "taesd":
            x = x * 2 - 1
    elif op == "decode":
        x = torch.randn(latent_shape(model, batch, width, height), generator=g)
    else:
        raise ValueError(op)
    x = x.to(device=device, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def bench_device(model, op, width, height, batch, runs, warmup, device, dtype, channels_last=False, seed=0):
    """Time model.encode/decode on DEVICE. On CUDA each run is timed with a
    pair of CUDA events (ms, GPU time from the first launch to the end of the
    last kernel), after `warmup` untimed runs; the allocator's peak is reset
    before the case (weights and input count, as they are held), so
    peak_mib = torch.cuda.max_memory_allocated over warm-up and timed runs.
    Elsewhere (the dry run's CPU fallback) runs are timed with perf_counter.
    Returns {'times_ms': [...], 'peak_mib': float|None, 'reserved_mib': ..., 'finite': bool}."""
    cuda = torch.device(device).type == "cuda"
    fn = model.encode if op == "encode" else model.decode
    x = make_input(model, op, width, height, batch, device, dtype, channels_last, seed)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    times = []
    y = None
    with torch.inference_mode():
        for _ in range(warmup):
            y = None
            y = fn(x)
        if cuda:
            torch.cuda.synchronize()
        for _ in range(runs):
            y = None  # do not hold the last output while computing the next
            if cuda:
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                y = fn(x)
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                y = fn(x)
                times.append((time.perf_counter() - t0) * 1e3)
        finite = bool(torch.isfinite(y).all())
    res = {"times_ms": times, "finite": finite, "peak_mib": None, "reserved_mib": None}
    if cuda:
        torch.cuda.synchronize()
        res["peak_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
        res["reserved_mib"] = torch.cuda.max_memory_reserved() / 2 ** 20
    del x, y
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench", help="time encode/decode like `vae-tool bench`")
    b.add_argument("--model", required=True)
    b.add_argument("--op", choices=["encode", "decode"], required=True)
    b.add_argument("--width", type=int, required=True)
    b.add_argument("--height", type=int, required=True)
    b.add_argument("--batch", type=int, default=1)
    b.add_argument("--runs", type=int, default=3)
    b.add_argument("--warmup", type=int, default=1)
    b.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2") or 2))
    b.add_argument("--profile", action="store_true", help="after timing, print an op profile of one more run to stderr")
    g = b.add_argument_group("GPU mode (any of these switches from the CPU benchmark to bench_device)")
    g.add_argument("--device", default=None, help="e.g. cuda, cuda:1 (default: the CPU benchmark above)")
    g.add_argument("--dtype", default=None, help="float32 (default), float16 or bfloat16")
    g.add_argument("--channels-last", action="store_true", help="model and input in torch.channels_last")
    g.add_argument("--no-sdpa", action="store_true",
                   help="keep the torch 1.x AttnProcessor path (default in GPU mode: SDPA when torch has it)")
    g.add_argument("--cudnn-benchmark", action="store_true",
                   help="torch.backends.cudnn.benchmark=True (default: PyTorch's default, False)")
    a = ap.parse_args(argv)
    if a.cmd == "bench" and (a.device or a.dtype or a.channels_last or a.cudnn_benchmark):
        torch.set_num_threads(a.threads)
        device = a.device or "cpu"
        dtype = parse_dtype(a.dtype or "float32")
        if a.cudnn_benchmark:
            torch.backends.cudnn.benchmark = True
        sdpa = has_sdpa() and not a.no_sdpa
        model = to_device(load_vae(a.model), device, dtype, a.channels_last, sdpa)
        r = bench_device(model, a.op, a.width, a.height, a.batch, a.runs, a.warmup, device, dtype, a.channels_last)
        if not r["finite"]:
            print("warning: non-finite output", file=sys.stderr)
        med = statistics.median(r["times_ms"])
        print("torch=%s device=%s dtype=%s channels_last=%d sdpa=%d cudnn_benchmark=%d runs_ms=%s" % (
            torch.__version__, device, str(dtype).replace("torch.", ""), a.channels_last, sdpa,
            torch.backends.cudnn.benchmark, ",".join("%.3f" % t for t in r["times_ms"])))
        if r["peak_mib"] is not None:
            print("peak_mib=%.1f" % r["peak_mib"])
        print("device_ms=%.3f" % med)
        print("median_s=%.6f" % (med / 1e3))
    elif a.cmd == "bench":
        times = bench(a.model, a.op, a.width, a.height, a.batch, a.runs, a.threads, a.warmup, profile=a.profile)
        print("torch=%s threads=%d blas=[%s] runs_s=%s" % (torch.__version__, torch.get_num_threads(), torch_blas(),
                                                           ",".join("%.4f" % t for t in times)))
        print("median_s=%.6f" % statistics.median(times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
