"""Spikingformer (004_42ddbf2f3cc1fe81.txt): spike-driven residual learning, as variants of the shared
:class:`~.transformer.SpikingTransformer`.

Every branch starts with a neuron and ends in BN (``residual="membrane"``), so each conv / linear after
the tokenizer's first reads pure spikes and the residual stream carries BN outputs:

    Tokenizer: conv -> BN, then 4 x [LIF (-> MaxPool) -> conv -> BN]   (SPE / SPED; no position embedding)
    SSA:       x' = LIF(x); Q, K, V = LIF(BN(x' W)); out = BN(W_o LIF_0.5((Q Kᵀ) V · 0.125))
    MLP:       BN(W2 LIF(BN(W1 LIF(x))))
    Head:      FC(AvgPool(X)) (Table 4's three other heads: ``head=...``)

From the authors' code (zhouchenlin2096/Spikingformer): no bias on Q, K, V (CIFAR too), bias on the
projection and the MLP; scale 0.125 on every data set; tau 1.5 on event data, 2.0 on CIFAR; 16 heads on
event data. Parameters count only what the forward pass uses (the code also makes two unused LayerNorms
per block).
"""

from __future__ import annotations

from .registry import register_family, register_model
from .transformer import NDIGITS_SIZE, TEST_SIZE, SpikingTransformer, TransformerConfig

__all__: list[str] = []

register_family("spikingformer", TransformerConfig, SpikingTransformer)

_BASE = dict(tokenizer="spikingformer", residual="membrane", attention="ssa", attn_scale=0.125, qkv_bias=False)
_EVENT = dict(_BASE, img_size=128, in_channels=2, T=16, sps_pool=(True, True, True, True), neuron={"tau": 1.5})
_CIFAR = dict(_BASE, img_size=32, in_channels=3, T=4, sps_pool=(False, False, True, True), num_classes=10)
_IMAGENET = dict(_BASE, img_size=224, in_channels=3, T=4, sps_pool=(True, True, True, True), num_classes=1000)


@register_model("spikingformer")
def spikingformer_2_256_dvs():
    """Spikingformer-2-256 for 2x128x128 event frames (CIFAR10-DVS, DVS128 Gesture); T 16, tau 1.5."""
    return dict(_EVENT, embed_dim=256, depth=2, num_heads=16)


@register_model("spikingformer")
def spikingformer_4_384():
    """Spikingformer-4-384 for CIFAR-10/100 (32x32 RGB, T 4, 64 tokens)."""
    return dict(_CIFAR, embed_dim=384, depth=4, num_heads=12)


@register_model("spikingformer")
def spikingformer_4_256():
    """Spikingformer-4-256 for CIFAR-10/100 (32x32 RGB, T 4, 64 tokens)."""
    return dict(_CIFAR, embed_dim=256, depth=4, num_heads=8)


@register_model("spikingformer")
def spikingformer_2_384():
    """Spikingformer-2-384 for CIFAR-10/100 (32x32 RGB, T 4, 64 tokens)."""
    return dict(_CIFAR, embed_dim=384, depth=2, num_heads=12)


@register_model("spikingformer")
def spikingformer_8_384():
    """Spikingformer-8-384 for ImageNet (224x224 RGB, T 4, 196 tokens)."""
    return dict(_IMAGENET, embed_dim=384, depth=8, num_heads=12)


@register_model("spikingformer")
def spikingformer_8_512():
    """Spikingformer-8-512 for ImageNet (224x224 RGB, T 4, 196 tokens)."""
    return dict(_IMAGENET, embed_dim=512, depth=8, num_heads=8)


@register_model("spikingformer")
def spikingformer_8_768():
    """Spikingformer-8-768 for ImageNet (224x224 RGB, T 4, 196 tokens); 8 heads (the authors' imagenet.yml)."""
    return dict(_IMAGENET, embed_dim=768, depth=8, num_heads=8)


@register_model("spikingformer")
def spikingformer_2_64_ndigits():
    """Small Spikingformer-2-64 for the bundled N-Digits events (2x32x32, T 8, 16 tokens): CPU-sized."""
    return dict(_BASE, **NDIGITS_SIZE)


@register_model("spikingformer")
def test_spikingformer():
    """Tiny Spikingformer-1-32 for tests (2x32x32 events, T 2, 16 tokens)."""
    return dict(_BASE, **TEST_SIZE)
