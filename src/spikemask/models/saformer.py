"""SAFormer (003_a4e984e71bf4baa0.txt): Spike Aggregated Self-Attention, as variants of the shared
:class:`~.transformer.SpikingTransformer`.

The paper's equations were lost from its text; ../shared/spec/architectures.md reconstructs them from
the prose and every guessed choice is an option (:class:`~.transformer.SASAConfig`, ``sps_residual``):

    SPS:   4 x [conv -> BN (-> MaxPool) -> LIF], then conv -> BN (the fifth conv), added to its input
    SASA:  Q, K = LIF(BN(x' W)) (no V); A = LIF_0.5(s · Σ_rows AG(Q) ⊙ AG(K)), AG: average pool N -> N';
           out = BN(W_o LIF(A ⊙ K + BN(DWC(K))))
    Block: membrane-potential residuals as in Spikingformer (``residual="membrane"``); MLP likewise
    Head:  FC(GAP(X))

The paper trains 4-384 on CIFAR (T 4) and 2-256 on event data (T 16); its ablation (Table 3) compares
SDSA (``attention=sdsa``) with SASA without DWC (``sasa.dwc_kernel=0``), without aggregation
(``sasa.aggregate=false``) and without both.
"""

from __future__ import annotations

from .registry import register_family, register_model
from .transformer import NDIGITS_SIZE, TEST_SIZE, SpikingTransformer, TransformerConfig

__all__: list[str] = []

register_family("saformer", TransformerConfig, SpikingTransformer)

_BASE = dict(tokenizer="saformer", residual="membrane", attention="sasa", attn_scale=0.125, qkv_bias=False)
_CIFAR = dict(_BASE, img_size=32, in_channels=3, T=4, sps_pool=(False, False, True, True), num_classes=10)


@register_model("saformer")
def saformer_2_256_dvs():
    """SAFormer-2-256 for 2x128x128 event frames (CIFAR10-DVS, DVS128 Gesture); T 16, 64 tokens."""
    return dict(_BASE, img_size=128, in_channels=2, T=16, sps_pool=(True, True, True, True), embed_dim=256,
                depth=2, num_heads=16)


@register_model("saformer")
def saformer_4_384():
    """SAFormer-4-384 for CIFAR-10/100 (32x32 RGB, T 4, 64 tokens)."""
    return dict(_CIFAR, embed_dim=384, depth=4, num_heads=12)


@register_model("saformer")
def saformer_2_512():
    """SAFormer-2-512 for CIFAR-10/100 (32x32 RGB, T 4): the size of the paper's ablation (Table 3)."""
    return dict(_CIFAR, embed_dim=512, depth=2, num_heads=8)


@register_model("saformer")
def saformer_2_64_ndigits():
    """Small SAFormer-2-64 for the bundled N-Digits events (2x32x32, T 8, 16 tokens): CPU-sized."""
    return dict(_BASE, **NDIGITS_SIZE)


@register_model("saformer")
def test_saformer():
    """Tiny SAFormer-1-32 for tests (2x32x32 events, T 2, 16 tokens)."""
    return dict(_BASE, **TEST_SIZE)
