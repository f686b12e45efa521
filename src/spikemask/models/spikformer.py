"""Spikformer (Zhou et al., ICLR 2023) and Masked Spikformer (000_766e5557120f520b.txt): the variants.

The architecture (../shared/spec/architectures.md) is :class:`~.transformer.SpikingTransformer` with its
defaults: the SPS tokenizer with the relative position embedding, SSA, spike residuals (an integer
stream), the average-pool + FC head:

    SPS:   4 x [conv3x3 -> BN -> LIF (-> MaxPool 3/2)]  channels D/8, D/4, D/2, D
           + relative position embedding: conv3x3 -> BN -> LIF, added (integer-valued, 0..2)
    Block: x = x + SSA(x);  x = x + MLP(x)       (spike + spike residual: an integer stream)
    SSA:   Q, K, V = LIF(BN(x W)); out = LIF_0.5((Q Kᵀ) V · s) -> proj -> BN -> LIF
    MLP:   LIF(BN(x W1)) -> W2 -> BN -> LIF
    Head:  mean over tokens and T -> Linear

Random Spike Masking sits at ``attn.q``, ``attn.k``, ``attn.scores`` (the Q Kᵀ products),
``mlp.hidden`` (hidden spikes) and ``mlp.hidden_pre`` (the BN output before the hidden LIF, the
other reading of the paper's Fig. 2).
"""

from __future__ import annotations

from .registry import register_family, register_model
from .transformer import NDIGITS_SIZE, TEST_SIZE, SpikformerConfig, SpikingTransformer

__all__ = ["SPIKFORMER_SITES"]

SPIKFORMER_SITES = ("attn.q", "attn.k", "attn.scores", "mlp.hidden", "mlp.hidden_pre")

register_family("spikformer", SpikformerConfig, SpikingTransformer)

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
    return dict(NDIGITS_SIZE, attn_scale=0.25)


@register_model("spikformer")
def test_spikformer():
    """Tiny Spikformer-1-32 for tests (2x32x32 events, T 2, 16 tokens)."""
    return dict(TEST_SIZE)
