"""Spiking attentions over tokens ``[T, B, N, D]`` -> ``[T, B, N, D]``, each with its Random Spike Masking sites.

* ``ssa``: Spikformer's Spiking Self-Attention, ``SN_0.5((Q Kᵀ) V · s)``, quadratic in N.
* ``sdsa``: Spike-Driven Self-Attention (Yao et al. 2023, the baseline of 003), ``Q ⊙ SN_0.5(Σ_N K ⊙ V)``:
  gates and token sums only, linear in N.
* ``sasa``: SAFormer's Spike Aggregated Self-Attention (003). Its equations were lost from the text;
  this is the reconstruction of ../shared/spec/architectures.md from the prose, every guess an option
  of :class:`SASAConfig`: Q and K only; ``A = SN(BN(Σ_rows AG(Q) ⊙ AG(K)))`` with AG an adaptive average
  pool over tokens N -> N'; output ``A ⊙ K + DWC(K)`` (a depthwise conv over the token grid); linear in N.

The projection is the same for all (``q, k[, v] = SN(BN(x W))``, ``proj`` -> BN). Where the neurons sit
around the branch follows the residual style of the backbone: ``spike`` (Spikformer: the branch reads the
stream as is and ends in a neuron) or ``membrane`` (Spikingformer: the branch starts with a neuron, so
every projection reads spikes, and ends in BN, the membrane shortcut).
"""

from __future__ import annotations

import torch
from torch import nn

from ..engine import Linear as EventLinear
from ..layers import HadamardSum, ResidualAdd, SpikeGate, SpikeMatmul, TokenBN, TokenDWConv, TokenPool
from ..masking import SpikeMask
from ..neurons import make_neuron

__all__ = ["ATTENTIONS", "SSA", "SDSA", "SASA"]


class _Attention(nn.Module):
    """Projections, residual-style neurons and the output projection; subclasses define :meth:`mix`."""

    projections: tuple[str, ...] = ("q", "k", "v")
    default_sites: tuple[str, ...] = ()  # the sites Random Spike Masking uses when none are named

    def __init__(self, cfg) -> None:
        super().__init__()
        D = cfg.embed_dim
        membrane = cfg.residual == "membrane"
        self.in_lif = make_neuron(cfg.neuron) if membrane else None  # every projection then reads spikes
        for name in self.projections:
            setattr(self, name, EventLinear(D, D, bias=cfg.qkv_bias, engine=cfg.engine, threshold=cfg.event_threshold))
            setattr(self, f"{name}_bn", TokenBN(D))
            setattr(self, f"{name}_lif", make_neuron(cfg.neuron))
        self.build(cfg)
        self.proj = EventLinear(D, D, engine=cfg.engine, threshold=cfg.event_threshold)
        self.proj_bn = TokenBN(D)
        self.proj_lif = None if membrane else make_neuron(cfg.neuron)

    def build(self, cfg) -> None:
        raise NotImplementedError

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def project(self, name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(BN output, spikes) of projection ``name`` (``q``, ``k``, ``v``)."""
        pre = getattr(self, f"{name}_bn")(getattr(self, name)(x))
        return pre, getattr(self, f"{name}_lif")(pre)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_lif is not None:
            x = self.in_lif(x)
        out = self.proj_bn(self.proj(self.mix(x)))
        return out if self.proj_lif is None else self.proj_lif(out)


class SSA(_Attention):
    """Spiking Self-Attention with RSM on Q, K and the Q Kᵀ scores. The scale ``s`` multiplies after
    both matmuls (same numbers as ``((Q Kᵀ) s) V``; the matmuls keep integer operands)."""

    default_sites = ("attn.q", "attn.k", "attn.scores")

    def build(self, cfg) -> None:
        self.num_heads = cfg.num_heads
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

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        T, B, N, D = x.shape
        return x.view(T, B, N, self.num_heads, D // self.num_heads).transpose(2, 3)  # [T, B, H, N, d]

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        T, B, N, D = x.shape
        q = self.mask_q(self.project("q", x)[1])  # [T, B, N, D] spikes
        k = self.mask_k(self.project("k", x)[1])
        v = self.project("v", x)[1]
        scores = self.mask_scores(self.qk(self._heads(q), self._heads(k).transpose(-2, -1)))  # [T, B, H, N, N]
        out = self.sv(scores, self._heads(v)) * self.scale  # [T, B, H, N, d]
        return self.attn_lif(out.transpose(2, 3).reshape(T, B, N, D))


class SDSA(_Attention):
    """Spike-Driven Self-Attention: ``Q ⊙ SN_0.5(Σ_N (K ⊙ V))``; heads do not matter (all elementwise).

    Sites: ``attn.q``, ``attn.k``, ``attn.v`` (the spikes), ``attn.kv`` (K ⊙ V before the token sum).
    """

    default_sites = ("attn.q", "attn.k", "attn.kv")

    def build(self, cfg) -> None:
        self.mask_q = SpikeMask("attn.q", feeds="qkv")
        self.mask_k = SpikeMask("attn.k", feeds="kv")
        self.mask_v = SpikeMask("attn.v", feeds="kv")
        self.kv = SpikeGate()
        self.mask_kv = SpikeMask("attn.kv", feeds="kv_sum")
        self.kv_sum = TokenPool(1, reduce="sum")
        self.kv_lif = make_neuron(cfg.neuron, v_threshold=cfg.attn_v_threshold)
        self.qkv = SpikeGate()

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        q = self.mask_q(self.project("q", x)[1])  # [T, B, N, D]
        k = self.mask_k(self.project("k", x)[1])
        v = self.mask_v(self.project("v", x)[1])
        kv = self.kv_lif(self.kv_sum(self.mask_kv(self.kv(k, v))))  # [T, B, 1, D] spikes
        return self.qkv(q, kv)  # [T, B, N, D] spikes


class SASA(_Attention):
    """Spike Aggregated Self-Attention (reconstructed; options in :class:`SASAConfig`).

    Sites: ``attn.q``, ``attn.k`` (spikes), ``attn.q_agg``, ``attn.k_agg`` (the aggregated Q', K', real),
    ``attn.vector`` (the attention vector A, spikes).
    """

    projections = ("q", "k")
    default_sites = ("attn.q", "attn.k", "attn.vector")

    def build(self, cfg) -> None:
        s = cfg.sasa
        self.aggregate, self.from_spikes = s.aggregate, s.aggregate_input == "spikes"
        self.scale = float(s.scale)
        # who reads the masked spikes (the energy counter credits the masks to them)
        reads_q = ("agg_q" if s.aggregate else "qk",) if self.from_spikes else ()
        reads_k = ("ak", "dwc.conv") + (("agg_k" if s.aggregate else "qk",) if self.from_spikes else ())
        self.mask_q = SpikeMask("attn.q", feeds=reads_q)
        self.mask_k = SpikeMask("attn.k", feeds=reads_k if s.dwc_kernel else reads_k[:1] + reads_k[2:])
        if s.aggregate:
            self.agg_q = TokenPool(s.tokens)
            self.agg_k = TokenPool(s.tokens)
        self.mask_q_agg = SpikeMask("attn.q_agg", feeds="qk")
        self.mask_k_agg = SpikeMask("attn.k_agg", feeds="qk")
        self.qk = HadamardSum(dim=2)  # Σ over the (aggregated) token rows
        self.vector_bn = TokenBN(cfg.embed_dim) if s.vector_bn else None
        self.vector_lif = make_neuron(cfg.neuron, v_threshold=cfg.attn_v_threshold)
        self.mask_vector = SpikeMask("attn.vector", feeds="ak")
        self.ak = SpikeGate()
        self.dwc = TokenDWConv(cfg.embed_dim, s.dwc_kernel, cfg.grid) if s.dwc_kernel else None
        self.dwc_bn = TokenBN(cfg.embed_dim) if s.dwc_kernel and s.dwc_bn else None
        self.merge = ResidualAdd() if s.dwc_kernel else None
        self.out_lif = make_neuron(cfg.neuron) if s.out_neuron else None

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        q_pre, q = self.project("q", x)
        k_pre, k = self.project("k", x)
        q, k = self.mask_q(q), self.mask_k(k)  # [T, B, N, D] spikes
        src_q, src_k = (q, k) if self.from_spikes else (q_pre, k_pre)
        if self.aggregate:
            src_q, src_k = self.agg_q(src_q), self.agg_k(src_k)  # [T, B, N', D]
        a = self.qk(self.mask_q_agg(src_q), self.mask_k_agg(src_k)) * self.scale  # [T, B, 1, D]
        if self.vector_bn is not None:
            a = self.vector_bn(a)
        vector = self.mask_vector(self.vector_lif(a))  # per-channel attention spikes
        out = self.ak(vector, k)  # [T, B, N, D] spikes
        if self.dwc is not None:
            local = self.dwc(k)
            out = self.merge(out, local if self.dwc_bn is None else self.dwc_bn(local))
        return out if self.out_lif is None else self.out_lif(out)


ATTENTIONS: dict[str, type[_Attention]] = {"ssa": SSA, "sdsa": SDSA, "sasa": SASA}
