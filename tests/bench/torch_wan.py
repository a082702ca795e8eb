#!/usr/bin/python3
"""PyTorch peer for the video benchmark: AutoencoderKLWan (Wan 2.1 and Wan 2.2).

Built from stock torch.nn modules the way diffusers v0.40 `AutoencoderKLWan`
builds them (see docs in ../shared/docs/video-architectures.md): nn.Conv3d
subclassed as a causal conv (the declared padding replaced by F.pad with 2*pt
frames in front, none behind; a cached tensor is concatenated in front and
the zero padding shrinks by its length), the per-conv feature cache with
CACHE_T = 2 frames (a list of entries filled in call order, indexed by a
running counter), RMS norm as F.normalize(x, dim=1) * sqrt(C) * gamma, SiLU,
the Resample modules (ZeroPad2d(0,1,0,1) + stride-2 Conv2d, nn.Upsample
'nearest-exact' + Conv2d, the (3,1,1) time convs with their "Rep" first-call
marker), the mid-block attention as one head of dim C per frame (torch 1.13
has no F.scaled_dot_product_attention, so a plain softmax(q k^T / sqrt(C)) v),
and for Wan 2.2 the patchify / unpatchify, AvgDown3D / DupUp3D shortcuts and
the residual up/down blocks. fp32, no hand fusion.

encode(video NCTHW in [-1,1]) runs the encoder on frame 0, then on chunks of
4 frames (1-4, 5-8, ...; the last (T-1) % 4 frames are ignored, as diffusers
does), concatenates, applies quant_conv and returns (mean, logvar) with logvar
clamped to [-30, 20]. decode(latents) runs post_quant_conv, then the decoder
one latent frame at a time (the first flagged first_chunk), unpatchifies and
returns the output (clamped to [-1,1] unless clamp=False).

Weights: a diffusers folder (config.json + diffusion_pytorch_model.safetensors,
F32/F16/BF16 widened to float32), or an original-layout Wan file
(Wan2.1_VAE / Wan2.2_VAE keys, *.safetensors) whose names are mapped to the
diffusers ones (map_original_keys) and whose config is inferred from shapes,
or a named real config with seeded random weights: wan2.1 (base_dim 96, z 16)
or wan2.2 (base_dim 160, decoder_base_dim 256, z 48, patch 2, is_residual).

CLI (last stdout line is median_s=<s>, like `vae-tool bench`):
  torch_wan.py bench --model PATH|wan2.1|wan2.2 --op encode|decode
               --width W --height H --frames T [--runs 3] [--warmup 1] [--threads 2]
"""
import json
import math
import os
import re
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_cli import peer_main  # noqa: E402
from torch_vae import load_safetensors, read_safetensors_header, save_safetensors  # noqa: E402

CACHE_T = 2

WAN21_MEAN = [-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
              0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921]
WAN21_STD = [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
             3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.916]
WAN22_MEAN = [-0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557, -0.1382, 0.0542, 0.2813,
              0.0891, 0.157, -0.0098, 0.0375, -0.1825, -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108,
              -0.2158, 0.2502, -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.123, -0.0313,
              -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.052, 0.3748, 0.0152, 0.1957, 0.1433, -0.2944,
              0.3573, -0.0548, -0.1681, -0.0667]
WAN22_STD = [0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.499, 0.4818, 0.5013, 0.8158, 1.0344, 0.5894, 1.0901,
             0.6885, 0.6165, 0.8454, 0.4978, 0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
             0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093, 0.5709, 0.6065, 0.6415, 0.4944,
             0.5726, 1.2042, 0.5458, 1.6887, 0.3971, 1.06, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744]

DEFAULTS = {
    "base_dim": 96, "decoder_base_dim": None, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2,
    "attn_scales": [], "temperal_downsample": [False, True, True], "dropout": 0.0,
    "latents_mean": WAN21_MEAN, "latents_std": WAN21_STD, "is_residual": False, "in_channels": 3,
    "out_channels": 3, "patch_size": None, "scale_factor_temporal": 4, "scale_factor_spatial": 8,
}

REAL_CONFIGS = {
    "wan2.1": dict(DEFAULTS),
    "wan2.2": dict(DEFAULTS, base_dim=160, decoder_base_dim=256, z_dim=48, is_residual=True, in_channels=12,
                   out_channels=12, patch_size=2, scale_factor_spatial=16,
                   latents_mean=WAN22_MEAN, latents_std=WAN22_STD),
}


# --------------------------------------------------------------------------
# Building blocks (diffusers v0.40 structure and names)
# --------------------------------------------------------------------------

class AvgDown3D(nn.Module):
    def __init__(self, in_channels, out_channels, factor_t, factor_s=1):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.factor_t = factor_t
        self.factor_s = factor_s
        self.factor = factor_t * factor_s * factor_s
        assert in_channels * self.factor % out_channels == 0
        self.group_size = in_channels * self.factor // out_channels

    def forward(self, x):
        pad_t = (self.factor_t - x.shape[2] % self.factor_t) % self.factor_t
        x = F.pad(x, (0, 0, 0, 0, pad_t, 0))
        b, c, t, h, w = x.shape
        ft, fs = self.factor_t, self.factor_s
        x = x.view(b, c, t // ft, ft, h // fs, fs, w // fs, fs)
        x = x.permute(0, 1, 3, 5, 7, 2, 4, 6).contiguous()
        x = x.view(b, c * self.factor, t // ft, h // fs, w // fs)
        x = x.view(b, self.out_channels, self.group_size, t // ft, h // fs, w // fs)
        return x.mean(dim=2)


class DupUp3D(nn.Module):
    def __init__(self, in_channels, out_channels, factor_t, factor_s=1):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.factor_t = factor_t
        self.factor_s = factor_s
        self.factor = factor_t * factor_s * factor_s
        assert out_channels * self.factor % in_channels == 0
        self.repeats = out_channels * self.factor // in_channels

    def forward(self, x, first_chunk=False):
        x = x.repeat_interleave(self.repeats, dim=1)
        ft, fs = self.factor_t, self.factor_s
        x = x.view(x.size(0), self.out_channels, ft, fs, fs, x.size(2), x.size(3), x.size(4))
        x = x.permute(0, 1, 5, 2, 6, 3, 7, 4).contiguous()
        x = x.view(x.size(0), self.out_channels, x.size(2) * ft, x.size(4) * fs, x.size(6) * fs)
        if first_chunk:
            x = x[:, :, ft - 1:, :, :]
        return x


class WanCausalConv3d(nn.Conv3d):
    """nn.Conv3d whose padding is applied by hand: (pw, pw, ph, ph, 2*pt, 0)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding)
        self._padding = (self.padding[2], self.padding[2], self.padding[1], self.padding[1], 2 * self.padding[0], 0)
        self.padding = (0, 0, 0)

    def forward(self, x, cache_x=None):
        padding = list(self._padding)
        if cache_x is not None and self._padding[4] > 0:
            x = torch.cat([cache_x, x], dim=2)
            padding[4] -= cache_x.shape[2]
        x = F.pad(x, padding)
        return super().forward(x)


class WanRMS_norm(nn.Module):
    def __init__(self, dim, channel_first=True, images=True, bias=False):
        super().__init__()
        broadcastable_dims = (1, 1, 1) if not images else (1, 1)
        shape = (dim, *broadcastable_dims) if channel_first else (dim,)
        self.channel_first = channel_first
        self.scale = dim ** 0.5
        self.gamma = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape)) if bias else 0.0

    def forward(self, x):
        return F.normalize(x, dim=(1 if self.channel_first else -1)) * self.scale * self.gamma + self.bias


class WanUpsample(nn.Upsample):
    def forward(self, x):
        return super().forward(x.float()).type_as(x)


def _cached_conv(conv, x, feat_cache, feat_idx):
    """The diffusers cache rule around one 3x3x3 causal conv."""
    if feat_cache is None:
        return conv(x)
    idx = feat_idx[0]
    cache_x = x[:, :, -CACHE_T:, :, :].clone()
    if cache_x.shape[2] < 2 and feat_cache[idx] is not None:
        cache_x = torch.cat([feat_cache[idx][:, :, -1, :, :].unsqueeze(2), cache_x], dim=2)
    x = conv(x, feat_cache[idx])
    feat_cache[idx] = cache_x
    feat_idx[0] += 1
    return x


class WanResample(nn.Module):
    def __init__(self, dim, mode, upsample_out_dim=None):
        super().__init__()
        self.dim = dim
        self.mode = mode
        if upsample_out_dim is None:
            upsample_out_dim = dim // 2
        if mode == "upsample2d":
            self.resample = nn.Sequential(WanUpsample(scale_factor=(2.0, 2.0), mode="nearest-exact"),
                                          nn.Conv2d(dim, upsample_out_dim, 3, padding=1))
        elif mode == "upsample3d":
            self.resample = nn.Sequential(WanUpsample(scale_factor=(2.0, 2.0), mode="nearest-exact"),
                                          nn.Conv2d(dim, upsample_out_dim, 3, padding=1))
            self.time_conv = WanCausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode == "downsample2d":
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=(2, 2)))
        elif mode == "downsample3d":
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=(2, 2)))
            self.time_conv = WanCausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1), padding=(0, 0, 0))
        else:
            self.resample = nn.Identity()

    def forward(self, x, feat_cache=None, feat_idx=[0]):
        b, c, t, h, w = x.size()
        if self.mode == "upsample3d" and feat_cache is not None:
            idx = feat_idx[0]
            if feat_cache[idx] is None:
                feat_cache[idx] = "Rep"
                feat_idx[0] += 1
            else:
                cache_x = x[:, :, -CACHE_T:, :, :].clone()
                rep = isinstance(feat_cache[idx], str)
                if cache_x.shape[2] < 2 and not rep:
                    cache_x = torch.cat([feat_cache[idx][:, :, -1, :, :].unsqueeze(2), cache_x], dim=2)
                if cache_x.shape[2] < 2 and rep:
                    cache_x = torch.cat([torch.zeros_like(cache_x), cache_x], dim=2)
                if rep:
                    x = self.time_conv(x)
                else:
                    x = self.time_conv(x, feat_cache[idx])
                feat_cache[idx] = cache_x
                feat_idx[0] += 1
                x = x.reshape(b, 2, c, t, h, w)
                x = torch.stack((x[:, 0, :, :, :, :], x[:, 1, :, :, :, :]), 3)
                x = x.reshape(b, c, t * 2, h, w)
        t = x.shape[2]
        x = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        x = self.resample(x)
        x = x.view(b, t, x.size(1), x.size(2), x.size(3)).permute(0, 2, 1, 3, 4)
        if self.mode == "downsample3d" and feat_cache is not None:
            idx = feat_idx[0]
            if feat_cache[idx] is None:
                feat_cache[idx] = x.clone()
                feat_idx[0] += 1
            else:
                cache_x = x[:, :, -1:, :, :].clone()
                x = self.time_conv(torch.cat([feat_cache[idx][:, :, -1:, :, :], x], 2))
                feat_cache[idx] = cache_x
                feat_idx[0] += 1
        return x


class WanResidualBlock(nn.Module):
    def __init__(self, in_dim, out_dim, dropout=0.0):
        super().__init__()
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.nonlinearity = nn.SiLU()
        self.norm1 = WanRMS_norm(in_dim, images=False)
        self.conv1 = WanCausalConv3d(in_dim, out_dim, 3, padding=1)
        self.norm2 = WanRMS_norm(out_dim, images=False)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = WanCausalConv3d(out_dim, out_dim, 3, padding=1)
        self.conv_shortcut = WanCausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x, feat_cache=None, feat_idx=[0]):
        h = self.conv_shortcut(x)
        x = self.norm1(x)
        x = self.nonlinearity(x)
        x = _cached_conv(self.conv1, x, feat_cache, feat_idx)
        x = self.norm2(x)
        x = self.nonlinearity(x)
        x = self.dropout(x)
        x = _cached_conv(self.conv2, x, feat_cache, feat_idx)
        return x + h


class WanAttentionBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim
        self.norm = WanRMS_norm(dim)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x):
        identity = x
        b, c, t, h, w = x.size()
        x = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        x = self.norm(x)
        qkv = self.to_qkv(x)
        qkv = qkv.reshape(b * t, 1, c * 3, -1)
        qkv = qkv.permute(0, 1, 3, 2).contiguous()
        q, k, v = qkv.chunk(3, dim=-1)
        # torch 1.13: no F.scaled_dot_product_attention; its math, written out
        attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(q.size(-1)), dim=-1)
        x = torch.matmul(attn, v)
        x = x.squeeze(1).permute(0, 2, 1).reshape(b * t, c, h, w)
        x = self.proj(x)
        x = x.view(b, t, c, h, w).permute(0, 2, 1, 3, 4)
        return x + identity


class WanMidBlock(nn.Module):
    def __init__(self, dim, dropout=0.0, num_layers=1):
        super().__init__()
        resnets = [WanResidualBlock(dim, dim, dropout)]
        attentions = []
        for _ in range(num_layers):
            attentions.append(WanAttentionBlock(dim))
            resnets.append(WanResidualBlock(dim, dim, dropout))
        self.attentions = nn.ModuleList(attentions)
        self.resnets = nn.ModuleList(resnets)

    def forward(self, x, feat_cache=None, feat_idx=[0]):
        x = self.resnets[0](x, feat_cache, feat_idx)
        for attn, resnet in zip(self.attentions, self.resnets[1:]):
            x = attn(x)
            x = resnet(x, feat_cache, feat_idx)
        return x


class WanResidualDownBlock(nn.Module):
    def __init__(self, in_dim, out_dim, dropout, num_res_blocks, temperal_downsample=False, down_flag=False):
        super().__init__()
        self.avg_shortcut = AvgDown3D(in_dim, out_dim, factor_t=2 if temperal_downsample else 1,
                                      factor_s=2 if down_flag else 1)
        resnets = []
        for _ in range(num_res_blocks):
            resnets.append(WanResidualBlock(in_dim, out_dim, dropout))
            in_dim = out_dim
        self.resnets = nn.ModuleList(resnets)
        if down_flag:
            mode = "downsample3d" if temperal_downsample else "downsample2d"
            self.downsampler = WanResample(out_dim, mode=mode)
        else:
            self.downsampler = None

    def forward(self, x, feat_cache=None, feat_idx=[0]):
        x_copy = x.clone()
        for resnet in self.resnets:
            x = resnet(x, feat_cache, feat_idx)
        if self.downsampler is not None:
            x = self.downsampler(x, feat_cache, feat_idx)
        return x + self.avg_shortcut(x_copy)


class WanEncoder3d(nn.Module):
    def __init__(self, in_channels=3, dim=128, z_dim=4, dim_mult=(1, 2, 4, 4), num_res_blocks=2, attn_scales=(),
                 temperal_downsample=(True, True, False), dropout=0.0, is_residual=False):
        super().__init__()
        dims = [dim * u for u in [1] + list(dim_mult)]
        scale = 1.0
        self.nonlinearity = nn.SiLU()
        self.conv_in = WanCausalConv3d(in_channels, dims[0], 3, padding=1)
        self.down_blocks = nn.ModuleList([])
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            if is_residual:
                self.down_blocks.append(WanResidualDownBlock(
                    in_dim, out_dim, dropout, num_res_blocks,
                    temperal_downsample=temperal_downsample[i] if i != len(dim_mult) - 1 else False,
                    down_flag=i != len(dim_mult) - 1))
            else:
                for _ in range(num_res_blocks):
                    self.down_blocks.append(WanResidualBlock(in_dim, out_dim, dropout))
                    if scale in attn_scales:
                        self.down_blocks.append(WanAttentionBlock(out_dim))
                    in_dim = out_dim
                if i != len(dim_mult) - 1:
                    mode = "downsample3d" if temperal_downsample[i] else "downsample2d"
                    self.down_blocks.append(WanResample(out_dim, mode=mode))
                    scale /= 2.0
        self.mid_block = WanMidBlock(out_dim, dropout, num_layers=1)
        self.norm_out = WanRMS_norm(out_dim, images=False)
        self.conv_out = WanCausalConv3d(out_dim, z_dim, 3, padding=1)

    def forward(self, x, feat_cache=None, feat_idx=[0]):
        x = _cached_conv(self.conv_in, x, feat_cache, feat_idx)
        for layer in self.down_blocks:
            if isinstance(layer, WanAttentionBlock):
                x = layer(x)
            elif feat_cache is not None:
                x = layer(x, feat_cache, feat_idx)
            else:
                x = layer(x)
        x = self.mid_block(x, feat_cache, feat_idx)
        x = self.norm_out(x)
        x = self.nonlinearity(x)
        x = _cached_conv(self.conv_out, x, feat_cache, feat_idx)
        return x


class WanUpBlock(nn.Module):
    def __init__(self, in_dim, out_dim, num_res_blocks, dropout=0.0, upsample_mode=None):
        super().__init__()
        resnets = []
        current_dim = in_dim
        for _ in range(num_res_blocks + 1):
            resnets.append(WanResidualBlock(current_dim, out_dim, dropout))
            current_dim = out_dim
        self.resnets = nn.ModuleList(resnets)
        self.upsamplers = None
        if upsample_mode is not None:
            self.upsamplers = nn.ModuleList([WanResample(out_dim, mode=upsample_mode)])

    def forward(self, x, feat_cache=None, feat_idx=[0], first_chunk=None):
        for resnet in self.resnets:
            x = resnet(x, feat_cache, feat_idx)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, feat_cache, feat_idx)
        return x


class WanResidualUpBlock(nn.Module):
    def __init__(self, in_dim, out_dim, num_res_blocks, dropout=0.0, temperal_upsample=False, up_flag=False):
        super().__init__()
        if up_flag:
            self.avg_shortcut = DupUp3D(in_dim, out_dim, factor_t=2 if temperal_upsample else 1, factor_s=2)
        else:
            self.avg_shortcut = None
        resnets = []
        current_dim = in_dim
        for _ in range(num_res_blocks + 1):
            resnets.append(WanResidualBlock(current_dim, out_dim, dropout))
            current_dim = out_dim
        self.resnets = nn.ModuleList(resnets)
        if up_flag:
            mode = "upsample3d" if temperal_upsample else "upsample2d"
            self.upsampler = WanResample(out_dim, mode=mode, upsample_out_dim=out_dim)
        else:
            self.upsampler = None

    def forward(self, x, feat_cache=None, feat_idx=[0], first_chunk=False):
        x_copy = x.clone()
        for resnet in self.resnets:
            x = resnet(x, feat_cache, feat_idx)
        if self.upsampler is not None:
            x = self.upsampler(x, feat_cache, feat_idx)
        if self.avg_shortcut is not None:
            x = x + self.avg_shortcut(x_copy, first_chunk=first_chunk)
        return x


class WanDecoder3d(nn.Module):
    def __init__(self, dim=128, z_dim=4, dim_mult=(1, 2, 4, 4), num_res_blocks=2, attn_scales=(),
                 temperal_upsample=(False, True, True), dropout=0.0, out_channels=3, is_residual=False):
        super().__init__()
        dim_mult = list(dim_mult)
        dims = [dim * u for u in [dim_mult[-1]] + dim_mult[::-1]]
        self.nonlinearity = nn.SiLU()
        self.conv_in = WanCausalConv3d(z_dim, dims[0], 3, padding=1)
        self.mid_block = WanMidBlock(dims[0], dropout, num_layers=1)
        self.up_blocks = nn.ModuleList([])
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            if i > 0 and not is_residual:
                in_dim = in_dim // 2
            up_flag = i != len(dim_mult) - 1
            upsample_mode = None
            if up_flag and temperal_upsample[i]:
                upsample_mode = "upsample3d"
            elif up_flag:
                upsample_mode = "upsample2d"
            if is_residual:
                blk = WanResidualUpBlock(in_dim, out_dim, num_res_blocks, dropout,
                                         temperal_upsample=temperal_upsample[i] if up_flag else False,
                                         up_flag=up_flag)
            else:
                blk = WanUpBlock(in_dim, out_dim, num_res_blocks, dropout, upsample_mode)
            self.up_blocks.append(blk)
        self.norm_out = WanRMS_norm(out_dim, images=False)
        self.conv_out = WanCausalConv3d(out_dim, out_channels, 3, padding=1)

    def forward(self, x, feat_cache=None, feat_idx=[0], first_chunk=False):
        x = _cached_conv(self.conv_in, x, feat_cache, feat_idx)
        x = self.mid_block(x, feat_cache, feat_idx)
        for up_block in self.up_blocks:
            x = up_block(x, feat_cache, feat_idx, first_chunk=first_chunk)
        x = self.norm_out(x)
        x = self.nonlinearity(x)
        x = _cached_conv(self.conv_out, x, feat_cache, feat_idx)
        return x


def patchify(x, patch_size):
    if patch_size == 1:
        return x
    b, c, f, h, w = x.shape
    p = patch_size
    x = x.view(b, c, f, h // p, p, w // p, p)
    x = x.permute(0, 1, 6, 4, 2, 3, 5).contiguous()  # b, c, r(col), q(row), f, h, w
    return x.view(b, c * p * p, f, h // p, w // p)


def unpatchify(x, patch_size):
    if patch_size == 1:
        return x
    b, cpp, f, h, w = x.shape
    p = patch_size
    c = cpp // (p * p)
    x = x.view(b, c, p, p, f, h, w)  # b, c, r, q, f, h, w
    x = x.permute(0, 1, 4, 5, 3, 6, 2).contiguous()  # b, c, f, h, q, w, r
    return x.view(b, c, f, h * p, w * p)


class AutoencoderKLWan(nn.Module):
    def __init__(self, config):
        super().__init__()
        cfg = dict(DEFAULTS)
        cfg.update({k: v for k, v in config.items() if not k.startswith("_")})
        for k in DEFAULTS:  # null in a config means the default
            if cfg.get(k) is None and k not in ("decoder_base_dim", "patch_size"):
                cfg[k] = DEFAULTS[k]
        self.config = cfg
        z_dim = cfg["z_dim"]
        self.z_dim = z_dim
        self.temperal_downsample = list(cfg["temperal_downsample"])
        self.temperal_upsample = self.temperal_downsample[::-1]
        decoder_base_dim = cfg["decoder_base_dim"] or cfg["base_dim"]
        self.encoder = WanEncoder3d(in_channels=cfg["in_channels"], dim=cfg["base_dim"], z_dim=z_dim * 2,
                                    dim_mult=cfg["dim_mult"], num_res_blocks=cfg["num_res_blocks"],
                                    attn_scales=cfg["attn_scales"], temperal_downsample=self.temperal_downsample,
                                    dropout=cfg["dropout"], is_residual=cfg["is_residual"])
        self.quant_conv = WanCausalConv3d(z_dim * 2, z_dim * 2, 1)
        self.post_quant_conv = WanCausalConv3d(z_dim, z_dim, 1)
        self.decoder = WanDecoder3d(dim=decoder_base_dim, z_dim=z_dim, dim_mult=cfg["dim_mult"],
                                    num_res_blocks=cfg["num_res_blocks"], attn_scales=cfg["attn_scales"],
                                    temperal_upsample=self.temperal_upsample, dropout=cfg["dropout"],
                                    out_channels=cfg["out_channels"], is_residual=cfg["is_residual"])
        self._cached_conv_counts = {
            "decoder": sum(isinstance(m, WanCausalConv3d) for m in self.decoder.modules()),
            "encoder": sum(isinstance(m, WanCausalConv3d) for m in self.encoder.modules()),
        }
        self.clear_cache()

    def clear_cache(self):
        self._conv_num = self._cached_conv_counts["decoder"]
        self._conv_idx = [0]
        self._feat_map = [None] * self._conv_num
        self._enc_conv_num = self._cached_conv_counts["encoder"]
        self._enc_conv_idx = [0]
        self._enc_feat_map = [None] * self._enc_conv_num

    @property
    def patch_size(self):
        return self.config.get("patch_size") or 1

    def _encode(self, x):
        num_frame = x.shape[2]
        self.clear_cache()
        if self.config.get("patch_size") is not None:
            x = patchify(x, self.config["patch_size"])
        iter_ = 1 + (num_frame - 1) // 4
        out = None
        for i in range(iter_):
            self._enc_conv_idx = [0]
            if i == 0:
                out = self.encoder(x[:, :, :1, :, :], feat_cache=self._enc_feat_map, feat_idx=self._enc_conv_idx)
            else:
                out_ = self.encoder(x[:, :, 1 + 4 * (i - 1):1 + 4 * i, :, :], feat_cache=self._enc_feat_map,
                                    feat_idx=self._enc_conv_idx)
                out = torch.cat([out, out_], 2)
        enc = self.quant_conv(out)
        self.clear_cache()
        return enc

    def encode(self, x):
        """x: N,3,T,H,W in [-1,1] -> (mean, logvar) of the posterior."""
        h = self._encode(x)
        mean, logvar = torch.chunk(h, 2, dim=1)
        logvar = torch.clamp(logvar, -30.0, 20.0)
        return mean, logvar

    def decode(self, z, clamp=True):
        """z: N,z,t,h,w raw latents -> N,3,1+4(t-1),H,W (clamped to [-1,1] unless clamp=False)."""
        num_frame = z.shape[2]
        self.clear_cache()
        x = self.post_quant_conv(z)
        out = None
        for i in range(num_frame):
            self._conv_idx = [0]
            if i == 0:
                out = self.decoder(x[:, :, i:i + 1, :, :], feat_cache=self._feat_map, feat_idx=self._conv_idx,
                                   first_chunk=True)
            else:
                out_ = self.decoder(x[:, :, i:i + 1, :, :], feat_cache=self._feat_map, feat_idx=self._conv_idx)
                out = torch.cat([out, out_], 2)
        if self.config.get("patch_size") is not None:
            out = unpatchify(out, self.config["patch_size"])
        if clamp:
            out = torch.clamp(out, min=-1.0, max=1.0)
        self.clear_cache()
        return out

    def normalize(self, mean):
        m = torch.tensor(self.config["latents_mean"], dtype=mean.dtype).view(1, -1, 1, 1, 1)
        s = torch.tensor(self.config["latents_std"], dtype=mean.dtype).view(1, -1, 1, 1, 1)
        return (mean - m) * (1.0 / s)

    def latent_shape(self, batch, frames, width, height):
        f = self.config["scale_factor_spatial"]
        return (batch, self.z_dim, 1 + (frames - 1) // 4, height // f, width // f)


# --------------------------------------------------------------------------
# Original Wan keys -> diffusers keys (doc section 6)
# --------------------------------------------------------------------------

_RES = {"residual.0.gamma": "norm1.gamma", "residual.2.weight": "conv1.weight", "residual.2.bias": "conv1.bias",
        "residual.3.gamma": "norm2.gamma", "residual.6.weight": "conv2.weight", "residual.6.bias": "conv2.bias",
        "shortcut.weight": "conv_shortcut.weight", "shortcut.bias": "conv_shortcut.bias"}


def _map_block_tail(tail):
    """Names inside a residual block / resample / attention."""
    if tail in _RES:
        return _RES[tail]
    return tail  # resample.1.*, time_conv.*, norm.gamma, to_qkv.*, proj.*


def is_wan22_original(keys):
    return "decoder.upsamples.0.upsamples.0.residual.2.weight" in keys


def map_original_key(k, wan22):
    if k.startswith("conv1."):
        return "quant_conv." + k[len("conv1."):]
    if k.startswith("conv2."):
        return "post_quant_conv." + k[len("conv2."):]
    part, rest = k.split(".", 1)  # encoder / decoder
    m = re.match(r"conv1\.(.*)$", rest)
    if m:
        return f"{part}.conv_in.{m.group(1)}"
    m = re.match(r"head\.0\.(.*)$", rest)
    if m:
        return f"{part}.norm_out.{m.group(1)}"
    m = re.match(r"head\.2\.(.*)$", rest)
    if m:
        return f"{part}.conv_out.{m.group(1)}"
    m = re.match(r"middle\.(\d)\.(.*)$", rest)
    if m:
        i, tail = int(m.group(1)), m.group(2)
        if i == 1:
            return f"{part}.mid_block.attentions.0.{tail}"
        return f"{part}.mid_block.resnets.{i // 2}.{_map_block_tail(tail)}"
    if part == "encoder":
        if wan22:
            m = re.match(r"downsamples\.(\d+)\.downsamples\.(\d+)\.(.*)$", rest)
            i, j, tail = int(m.group(1)), int(m.group(2)), m.group(3)
            if j < 2:
                return f"encoder.down_blocks.{i}.resnets.{j}.{_map_block_tail(tail)}"
            return f"encoder.down_blocks.{i}.downsampler.{tail}"
        m = re.match(r"downsamples\.(\d+)\.(.*)$", rest)
        return f"encoder.down_blocks.{m.group(1)}.{_map_block_tail(m.group(2))}"
    if wan22:
        m = re.match(r"upsamples\.(\d+)\.upsamples\.(\d+)\.(.*)$", rest)
        i, j, tail = int(m.group(1)), int(m.group(2)), m.group(3)
        if j < 3:
            return f"decoder.up_blocks.{i}.resnets.{j}.{_map_block_tail(tail)}"
        return f"decoder.up_blocks.{i}.upsampler.{tail}"
    m = re.match(r"upsamples\.(\d+)\.(.*)$", rest)
    k4, tail = int(m.group(1)), m.group(2)
    i, j = divmod(k4, 4)
    if j < 3:
        return f"decoder.up_blocks.{i}.resnets.{j}.{_map_block_tail(tail)}"
    return f"decoder.up_blocks.{i}.upsamplers.0.{tail}"


def map_original_keys(state):
    wan22 = is_wan22_original(state)
    out = {}
    for k, v in state.items():
        nk = map_original_key(k, wan22)
        if nk in out:
            raise ValueError(f"two original keys map to {nk}")
        out[nk] = v
    return out


def config_from_original(state):
    """Infer the config of an original-layout file from its tensor shapes."""
    wan22 = is_wan22_original(state)
    cfg = dict(REAL_CONFIGS["wan2.2" if wan22 else "wan2.1"])
    cfg["base_dim"] = state["encoder.conv1.weight"].shape[0]
    cfg["z_dim"] = state["conv2.weight"].shape[0]
    dec0 = state["decoder.conv1.weight"].shape[0]  # base_dec * dim_mult[-1]
    cfg["decoder_base_dim"] = dec0 // cfg["dim_mult"][-1] if wan22 else None
    cfg["in_channels"] = state["encoder.conv1.weight"].shape[1]
    cfg["out_channels"] = state["decoder.head.2.weight"].shape[0]
    return cfg


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------

def _load_strict(module, state, what):
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{what}: missing {missing[:5]}..., unexpected {unexpected[:5]}...")


def build_random(name, seed=0):
    """Full-size real config with PyTorch's default module init, seeded."""
    torch.manual_seed(seed)
    model = AutoencoderKLWan(REAL_CONFIGS[name])
    model.eval()
    return model


def load_wan(path, config_path=None, seed=0):
    """PATH: wan2.1 | wan2.2 (random weights), a diffusers folder, or an
    original-layout .safetensors (config inferred; config_path, when given,
    supplies latents_mean/std)."""
    if path in REAL_CONFIGS:
        return build_random(path, seed)
    if os.path.isdir(path):
        with open(os.path.join(path, "config.json")) as f:
            cfg = json.load(f)
        state, _ = load_safetensors(os.path.join(path, "diffusion_pytorch_model.safetensors"))
    else:
        state, _ = load_safetensors(path)
        if "decoder.middle.0.residual.0.gamma" in state:
            cfg = config_from_original(state)
            state = map_original_keys(state)
        else:
            raise ValueError(f"{path}: neither a diffusers folder nor an original Wan file")
        if config_path:
            with open(config_path) as f:
                extra = json.load(f)
            cfg["latents_mean"] = extra["latents_mean"]
            cfg["latents_std"] = extra["latents_std"]
    model = AutoencoderKLWan(cfg)
    _load_strict(model, {k: v.float() for k, v in state.items()}, path)
    model.eval()
    return model


def save_diffusers(model, out):
    """Write the model as a diffusers folder (F32), for the C side to load."""
    os.makedirs(out, exist_ok=True)
    cfg = {"_class_name": "AutoencoderKLWan", "_diffusers_version": "0.40.0"}
    cfg.update(model.config)
    tensors = {k: v.detach().float().contiguous().numpy() for k, v in model.state_dict().items()}
    save_safetensors(os.path.join(out, "diffusion_pytorch_model.safetensors"), tensors, {"format": "pt"})
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    return out


# --------------------------------------------------------------------------
# Benchmark
# --------------------------------------------------------------------------

def clip_input(model, op, width, height, frames, g):
    """What `bench` times: encode of pixels NCTHW in [-1,1] (the mean is
    timed, as the latents), or decode of the latents of such a clip."""
    if op == "encode":
        return torch.rand((1, 3, frames, height, width), generator=g) * 2 - 1, lambda v: model.encode(v)[0]
    return torch.randn(model.latent_shape(1, frames, width, height), generator=g), model.decode


def main(argv=None):
    return peer_main(argv, __doc__, REAL_CONFIGS, load_wan,
                     lambda config, seed, out: save_diffusers(build_random(config, seed), out), clip_input,
                     model_help="wan2.1, wan2.2 (random weights) or a path",
                     write_help="write a real config with random weights as a diffusers folder",
                     bench_help="time a whole-clip encode or decode",
                     frames_help="pixel frames (decode: latents for this clip)")


if __name__ == "__main__":
    sys.exit(main())
