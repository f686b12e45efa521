"""Spikformer (Zhou et al., ICLR 2023) and Masked Spikformer (000_766e5557120f520b.txt).

Architecture as in ../shared/spec/architectures.md, time-first throughout:

    SPS:   4 x [conv3x3 -> BN -> LIF (-> MaxPool 3/2)]  channels D/8, D/4, D/2, D
           + relative position embedding: conv3x3 -> BN -> LIF, added (integer-valued, 0..2)
    Block: x = x + SSA(x);  x = x + MLP(x)       (spike + spike residual: an integer stream)
    SSA:   Q, K, V = LIF(BN(x W)); out = LIF_0.5((Q Kᵀ) V · s) -> proj -> BN -> LIF
    MLP:   LIF(BN(x W1)) -> W2 -> BN -> LIF
    Head:  mean over tokens and T -> Linear

Random Spike Masking sits at ``attn.q``, ``attn.k``, ``attn.scores`` (the Q Kᵀ products),
``mlp.hidden`` (hidden spikes) and ``mlp.hidden_pre`` (the BN output before the hidden LIF, the
other reading of the paper's Fig. 2). The scale ``s`` multiplies after both matmuls: the same
numbers as ``((Q Kᵀ) s) V`` (s is a scalar), but the matmuls keep integer operands.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from ..config import bounded, check_bounds
from ..layers import MeanPool, SpikeMatmul, TokenBN, mark_after_time_mean, seq_apply
from ..masking import MaskableMixin, MaskConfig, SpikeMask
from ..neurons import NeuronConfig, make_neuron
from .registry import register_family, register_model

__all__ = ["SpikformerConfig", "Spikformer"]

SPIKFORMER_SITES = ("attn.q", "attn.k", "attn.scores", "mlp.hidden", "mlp.hidden_pre")


@dataclass(kw_only=True)
class SpikformerConfig:
    """Spikformer hyper-parameters (defaults: the authors' event-data code for Spikformer-2-256).

    img_size: input height = width in pixels.
    in_channels: 2 for event frames (OFF, ON counts), 3 for RGB.
    num_classes: classifier outputs.
    embed_dim: token width D. depth: encoder blocks. num_heads: SSA heads (D must divide).
    mlp_ratio: MLP hidden width / D.
    T: time steps; a static ``[B, C, H, W]`` input is repeated T times.
    sps_pool: which of the 4 SPS stages end in MaxPool(3, 2, 1) (event/ImageNet: all; CIFAR: last 2).
    qkv_bias: bias on the Q, K, V projections (CIFAR code: yes; event and ImageNet code: no).
    attn_scale: the SSA scale s (event code 0.25; static code 0.125).
    learnable_scale: make s a parameter (the paper's description; the code keeps it fixed).
    attn_v_threshold: threshold of the neuron after the attention product (0.5).
    init: ``"conv"`` keeps PyTorch's default init for token projections (the event code's Conv1d);
        ``"trunc_normal"`` uses N(0, 0.02) weights and zero biases (the static code's Linear).
    neuron: the LIF neurons. mask: Random Spike Masking.
    """

    img_size: int = bounded(128, ge=1)
    in_channels: int = bounded(2, ge=1)
    num_classes: int = bounded(10, ge=1)
    embed_dim: int = bounded(256, ge=8)
    depth: int = bounded(2, ge=0)
    num_heads: int = bounded(16, ge=1)
    mlp_ratio: float = bounded(4.0, gt=0)
    T: int = bounded(16, ge=1)
    sps_pool: tuple[bool, ...] = (True, True, True, True)
    qkv_bias: bool = False
    attn_scale: float = bounded(0.25, gt=0)
    learnable_scale: bool = False
    attn_v_threshold: float = bounded(0.5, gt=0)
    init: Literal["conv", "trunc_normal"] = "conv"
    neuron: NeuronConfig = field(default_factory=NeuronConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)

    def __post_init__(self) -> None:
        check_bounds(self, "model")
        checks = [
            (self.embed_dim % 8 == 0,
             f"embed_dim must be a positive multiple of 8 (SPS uses D/8), got {self.embed_dim}"),
            (len(self.sps_pool) == 4, f"sps_pool needs 4 entries (one per SPS stage), got {len(self.sps_pool)}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"invalid Spikformer config: {msg}")
        if self.embed_dim % self.num_heads:  # after the checks above: num_heads >= 1 here
            raise ValueError(
                f"invalid Spikformer config: embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}"
            )
        side = self.img_size
        for pool in self.sps_pool:
            side = (side - 1) // 2 + 1 if pool else side
        if side < 1:
            raise ValueError(f"img_size {self.img_size} is too small for {sum(self.sps_pool)} poolings")

    @property
    def grid(self) -> int:
        """Token grid side after SPS (tokens N = grid²)."""
        side = self.img_size
        for pool in self.sps_pool:
            side = (side - 1) // 2 + 1 if pool else side
        return side


class ConvBNLIF(nn.Module):
    """conv3x3 (no bias) -> BN -> LIF [-> MaxPool(3, 2, 1)] on ``[T, B, C, H, W]``."""

    def __init__(self, c_in: int, c_out: int, neuron: NeuronConfig, pool: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.lif = make_neuron(neuron)
        self.pool = nn.MaxPool2d(3, 2, 1) if pool else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lif(seq_apply(self.bn, seq_apply(self.conv, x)))  # [T, B, C_out, H, W]
        return seq_apply(self.pool, x) if self.pool is not None else x


class SPS(nn.Module):
    """Spiking Patch Splitting: ``[T, B, C, H, W]`` -> tokens ``[T, B, N, D]``."""

    def __init__(self, cfg: SpikformerConfig) -> None:
        super().__init__()
        D = cfg.embed_dim
        chans = [cfg.in_channels, D // 8, D // 4, D // 2, D]
        self.stages = nn.ModuleList(
            ConvBNLIF(chans[i], chans[i + 1], cfg.neuron, cfg.sps_pool[i]) for i in range(4)
        )
        self.rpe = ConvBNLIF(D, D, cfg.neuron, pool=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        x = x + self.rpe(x)  # [T, B, D, H', W'], values in {0, 1, 2}
        return x.flatten(3).transpose(-1, -2).contiguous()  # [T, B, N, D]


class SSA(nn.Module):
    """Spiking Self-Attention with RSM on Q, K and the Q Kᵀ scores. ``[T, B, N, D]`` -> same."""

    def __init__(self, cfg: SpikformerConfig) -> None:
        super().__init__()
        D = cfg.embed_dim
        self.num_heads = cfg.num_heads
        for name in ("q", "k", "v"):
            setattr(self, name, nn.Linear(D, D, bias=cfg.qkv_bias))
            setattr(self, f"{name}_bn", TokenBN(D))
            setattr(self, f"{name}_lif", make_neuron(cfg.neuron))
        self.mask_q = SpikeMask("attn.q", feeds="qk")
        self.mask_k = SpikeMask("attn.k", feeds="qk")
        self.qk = SpikeMatmul()
        self.mask_scores = SpikeMask("attn.scores", feeds="sv")
        self.sv = SpikeMatmul()
        if cfg.learnable_scale:
            self.scale = nn.Parameter(torch.tensor(float(cfg.attn_scale)))
        else:
            self.scale = cfg.attn_scale
        self.attn_lif = make_neuron(cfg.neuron, v_threshold=cfg.attn_v_threshold)
        self.proj = nn.Linear(D, D)
        self.proj_bn = TokenBN(D)
        self.proj_lif = make_neuron(cfg.neuron)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        T, B, N, D = x.shape
        return x.view(T, B, N, self.num_heads, D // self.num_heads).transpose(2, 3)  # [T, B, H, N, d]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, N, D = x.shape
        q = self.mask_q(self.q_lif(self.q_bn(self.q(x))))  # [T, B, N, D] spikes
        k = self.mask_k(self.k_lif(self.k_bn(self.k(x))))
        v = self.v_lif(self.v_bn(self.v(x)))
        scores = self.mask_scores(self.qk(self._heads(q), self._heads(k).transpose(-2, -1)))  # [T, B, H, N, N]
        out = self.sv(scores, self._heads(v)) * self.scale  # [T, B, H, N, d]
        out = self.attn_lif(out.transpose(2, 3).reshape(T, B, N, D))  # [T, B, N, D]
        return self.proj_lif(self.proj_bn(self.proj(out)))


class MLP(nn.Module):
    """Two-layer spiking MLP with RSM on the hidden layer. ``[T, B, N, D]`` -> same."""

    def __init__(self, cfg: SpikformerConfig) -> None:
        super().__init__()
        D, hidden = cfg.embed_dim, int(cfg.embed_dim * cfg.mlp_ratio)
        self.fc1 = nn.Linear(D, hidden)
        self.fc1_bn = TokenBN(hidden)
        self.mask_hidden_pre = SpikeMask("mlp.hidden_pre")
        self.fc1_lif = make_neuron(cfg.neuron)
        self.mask_hidden = SpikeMask("mlp.hidden", feeds="fc2")
        self.fc2 = nn.Linear(hidden, D)
        self.fc2_bn = TokenBN(D)
        self.fc2_lif = make_neuron(cfg.neuron)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.mask_hidden(self.fc1_lif(self.mask_hidden_pre(self.fc1_bn(self.fc1(x)))))  # [T, B, N, 4D]
        return self.fc2_lif(self.fc2_bn(self.fc2(h)))


class Block(nn.Module):
    def __init__(self, cfg: SpikformerConfig) -> None:
        super().__init__()
        self.attn = SSA(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class Spikformer(MaskableMixin, nn.Module):
    """Spikformer / Masked Spikformer classifier.

    forward: ``[B, C, H, W]`` (static, repeated T times) or ``[T, B, C, H, W]`` (event frames)
    -> logits ``[B, num_classes]`` (mean over tokens and time, then the linear head).
    """

    family = "spikformer"
    mask_sites = SPIKFORMER_SITES

    def __init__(self, config: SpikformerConfig) -> None:
        super().__init__()
        self.config = config
        self.variant = "spikformer"
        self.sps = SPS(config)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.pool = MeanPool(dims=(0, 2))  # [T, B, N, D] -> [B, D]
        self.head = mark_after_time_mean(nn.Linear(config.embed_dim, config.num_classes))  # once per sample
        self._init_weights()
        self.set_mask(config.mask)

    def _init_weights(self) -> None:
        linears = [self.head] if self.config.init == "conv" else [m for m in self.modules() if isinstance(m, nn.Linear)]
        for m in linears:
            if m.weight.device.type == "meta":
                continue
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def expected_input(self) -> str:
        c = self.config
        chw = f"{c.in_channels}, {c.img_size}, {c.img_size}"
        return f"[B, {chw}] (static, repeated over T={c.T}) or [T, B, {chw}] (event frames)"

    def to_time_first(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        ok_chw = x.dim() in (4, 5) and tuple(x.shape[-3:]) == (c.in_channels, c.img_size, c.img_size)
        if not ok_chw:
            raise ValueError(
                f"{self.variant} expects input {self.expected_input()}; got shape {tuple(x.shape)}"
            )
        if x.dim() == 4:
            return x.unsqueeze(0).expand(c.T, *x.shape)  # [T, B, C, H, W]
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens after the last block, ``[T, B, N, D]`` (integer-valued)."""
        x = self.sps(self.to_time_first(x))
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.forward_features(x)))

    def extra_repr(self) -> str:
        c = self.config
        return f"variant={self.variant!r}, T={c.T}, tokens={c.grid ** 2}, mask: {c.mask.describe()}"


register_family("spikformer", SpikformerConfig, Spikformer)

_CIFAR = dict(img_size=32, in_channels=3, T=4, sps_pool=(False, False, True, True), qkv_bias=True,
              attn_scale=0.125, init="trunc_normal", num_classes=10)
_IMAGENET = dict(img_size=224, in_channels=3, T=4, sps_pool=(True, True, True, True), qkv_bias=False,
                 attn_scale=0.125, init="trunc_normal", num_classes=1000)


@register_model("spikformer")
def spikformer_2_256_dvs():
    """Spikformer-2-256 for 2x128x128 event frames (CIFAR10-DVS, DVS128 Gesture); T 16, 64 tokens."""
    return dict(img_size=128, in_channels=2, embed_dim=256, depth=2, num_heads=16, T=16)


@register_model("spikformer")
def spikformer_4_384():
    """Spikformer-4-384 for CIFAR-10/100 (32x32 RGB, T 4, 64 tokens)."""
    return dict(_CIFAR, embed_dim=384, depth=4, num_heads=12)


@register_model("spikformer")
def spikformer_4_256():
    """Spikformer-4-256 for CIFAR-10/100 (32x32 RGB, T 4, 64 tokens)."""
    return dict(_CIFAR, embed_dim=256, depth=4, num_heads=8)


@register_model("spikformer")
def spikformer_2_384():
    """Spikformer-2-384 for CIFAR-10/100 (32x32 RGB, T 4, 64 tokens)."""
    return dict(_CIFAR, embed_dim=384, depth=2, num_heads=12)


@register_model("spikformer")
def spikformer_8_384():
    """Spikformer-8-384 for ImageNet (224x224 RGB, T 4, 196 tokens)."""
    return dict(_IMAGENET, embed_dim=384, depth=8, num_heads=12)


@register_model("spikformer")
def spikformer_8_512():
    """Spikformer-8-512 for ImageNet (224x224 RGB, T 4, 196 tokens)."""
    return dict(_IMAGENET, embed_dim=512, depth=8, num_heads=8)


@register_model("spikformer")
def spikformer_8_768():
    """Spikformer-8-768 for ImageNet (224x224 RGB, T 4, 196 tokens)."""
    return dict(_IMAGENET, embed_dim=768, depth=8, num_heads=12)


@register_model("spikformer")
def spikformer_2_64_ndigits():
    """Small Spikformer-2-64 for the bundled N-Digits events (2x32x32, T 8, 16 tokens): CPU-sized."""
    return dict(img_size=32, in_channels=2, embed_dim=64, depth=2, num_heads=4, T=8,
                sps_pool=(True, True, True, False), attn_scale=0.25)


@register_model("spikformer")
def test_spikformer():
    """Tiny Spikformer-1-32 for tests (2x32x32 events, T 2, 16 tokens)."""
    return dict(img_size=32, in_channels=2, embed_dim=32, depth=1, num_heads=2, T=2,
                sps_pool=(False, True, True, True))
