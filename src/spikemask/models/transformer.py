"""One spiking vision transformer, assembled from parts: every family (Spikformer, Spikingformer, SAFormer)
is a set of defaults for :class:`TransformerConfig`, and any part can be swapped by config.

    tokens = TOKENIZER(x)                                  spikformer | spikingformer | saformer
    block:  x = x + ATTENTION(x);  x = x + MLP(x)          ssa | sdsa | sasa;  residual spike | membrane
    logits = HEAD(x)                                       avgpool_fc | sn_avgpool_fc | fc_avgpool | sn_fc_avgpool

Residual styles: ``spike`` (Spikformer, 000): each branch ends in a neuron, so the stream adds spikes and
is integer-valued, and the next branch's projections read integers. ``membrane`` (Spikingformer, 004):
each branch starts with a neuron and ends in BN, so the stream is real-valued (the membrane shortcut)
and every conv / linear after the tokenizer's first reads pure spikes.

Heads (Spikingformer's Table 4): FC(AvgPool(X)) is the default; SN first makes the pool average spikes;
``fc_*`` apply the FC at every token and step and average its outputs (the FC then runs T times).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from ..config import bounded, check_bounds
from ..engine import DEFAULT_THRESHOLD, check_engine, set_engine
from ..engine import Linear as EventLinear
from ..layers import MeanPool, ResidualAdd, TokenBN, channels_last_seq, mark_after_time_mean
from ..masking import MaskableMixin, MaskConfig, SpikeMask
from ..neurons import NeuronConfig, make_neuron
from .attention import ATTENTIONS
from .tokenizers import build_tokenizer

__all__ = ["TransformerConfig", "SASAConfig", "SpikingTransformer", "MLP", "Block", "HEADS"]

HEADS = ("avgpool_fc", "sn_avgpool_fc", "fc_avgpool", "sn_fc_avgpool")


# the sizes every family registers a variant of (one size per use, so the families compare side by side)
NDIGITS_SIZE = dict(img_size=32, in_channels=2, embed_dim=64, depth=2, num_heads=4, T=8,
                    sps_pool=(True, True, True, False))  # the bundled N-Digits events: CPU-sized
TEST_SIZE = dict(img_size=32, in_channels=2, embed_dim=32, depth=1, num_heads=2, T=2,
                 sps_pool=(False, True, True, True))  # tiny, for tests

# [T, B, N, D] mask sites besides Q, K and V (structured masks drop whole tokens or channels there)
TOKEN_SITES = ("attn.kv", "attn.q_agg", "attn.k_agg", "attn.vector", "mlp.hidden", "mlp.hidden_pre")

@dataclass(kw_only=True)
class SASAConfig:
    """Spike Aggregated Self-Attention (003). Its equations were lost from the paper's text: each field is a
    choice the reconstruction had to make (defaults follow the prose).

    tokens: N', the rows the aggregation pools Q and K to (the paper: N' = 1 already works).
    aggregate: pool Q and K (False: the ablation "w/o A", the Hadamard sum runs over all N tokens).
    aggregate_input: pool the ``spikes`` of Q and K, or their ``membrane`` inputs (the BN outputs: the
        paper calls the pooled matrices "floating-point").
    scale: multiplies Σ_rows AG(Q) ⊙ AG(K) before the attention neuron.
    vector_bn: a BatchNorm (per channel) between that sum and the attention neuron. The text shows none;
        without it the neuron's input grows with N and the firing rates of Q and K, so with a fixed
        threshold it either never fires or always does (then A ⊙ K = K): BN lets training set it.
    dwc_kernel: kernel of the depthwise convolution on K over the token grid (0: "w/o D", no DWC).
    dwc_bn: BatchNorm after the DWC (foldable into its weights).
    out_neuron: a neuron between ``A ⊙ K + DWC(K)`` and the projection, so the projection reads spikes.
    """

    tokens: int = bounded(1, ge=1)
    aggregate: bool = True
    aggregate_input: Literal["spikes", "membrane"] = "spikes"
    scale: float = bounded(1.0, gt=0)
    vector_bn: bool = True
    dwc_kernel: int = bounded(3, ge=0)
    dwc_bn: bool = True
    out_neuron: bool = True

    def __post_init__(self) -> None:
        check_bounds(self, "sasa")
        if self.dwc_kernel and self.dwc_kernel % 2 == 0:
            raise ValueError(f"sasa.dwc_kernel must be odd (same-size output) or 0 (no DWC), got {self.dwc_kernel}")


@dataclass(kw_only=True)
class TransformerConfig:
    """Spiking transformer hyper-parameters (defaults: the authors' event-data code for Spikformer-2-256).

    img_size: input height = width in pixels.
    in_channels: 2 for event frames (OFF, ON counts), 3 for RGB.
    num_classes: classifier outputs.
    embed_dim: token width D. depth: encoder blocks. num_heads: SSA heads (D must divide).
    mlp_ratio: MLP hidden width / D.
    T: time steps; a static ``[B, C, H, W]`` input is repeated T times.
    tokenizer: ``spikformer`` (SPS + position embedding), ``spikingformer`` (Spiking Tokenizer) or
        ``saformer`` (five-conv SPS); see :mod:`.tokenizers`.
    sps_pool: which of the 4 tokenizer stages halve the grid (event/ImageNet: all; CIFAR: last 2).
    sps_residual: ``saformer`` tokenizer only: add the fifth conv's output to the spikes it read.
    residual: ``spike`` (branches end in a neuron: Spikformer) or ``membrane`` (branches start with one).
    attention: ``ssa``, ``sdsa`` or ``sasa`` (:mod:`.attention`); ``sasa`` options in ``sasa``.
    qkv_bias: bias on the Q, K, V projections (Spikformer's CIFAR code: yes; the others: no).
    attn_scale: the SSA scale s (Spikformer event code 0.25; static code and Spikingformer 0.125).
    learnable_scale: make s a parameter (Spikformer's paper; the code keeps it fixed).
    attn_v_threshold: threshold of the attention's own neuron (SSA: after the product; SDSA: after
        the token sum; SASA: on the attention vector), 0.5 in all three papers' code.
    head: ``avgpool_fc``, ``sn_avgpool_fc``, ``fc_avgpool`` or ``sn_fc_avgpool`` (004, Table 4).
    init: ``"conv"`` keeps PyTorch's default init for token projections (the event code's Conv1d);
        ``"trunc_normal"`` uses N(0, 0.02) weights and zero biases (the static code's Linear).
    neuron: the LIF neurons. mask: Random Spike Masking (sites None: the attention's own default sites).
    engine: how the layers that may read spikes (attention q/k/v/proj, MLP fc1/fc2, the tokenizer's 3x3
        convolutions with >= 128 output channels, the latter with Numba installed) run at inference:
        ``dense`` (``F.linear`` / oneDNN), ``event`` (gather-add of the weights of the active inputs, weighted
        by spike counts, when the input holds spikes, else dense) or ``auto`` (event when the input's density
        < ``event_threshold``); training always runs dense, outputs are the same to float rounding
        (:mod:`spikemask.engine`).
    event_threshold: the density (fraction of non-zeros, in [0, 1]) below which ``auto`` uses events.
    channels_last: run the tokenizer's convolutions on channels-last (NHWC) frames: the same numbers to
        float rounding; measured 1.1-1.3x faster inference on CPU, no gain in training (docs/engine.md).
    fuse_bn_lif: in training, run the ``spikformer`` tokenizer's BN -> LIF -> MaxPool stages as one autograd
        node that keeps only the BN input for backward and recomputes the rest (:mod:`spikemask.fused`):
        the same numbers, about a quarter of those layers' activation memory, 7-19 % more time per training
        step on CPU (docs/engine.md).
    """

    img_size: int = bounded(128, ge=1)
    in_channels: int = bounded(2, ge=1)
    num_classes: int = bounded(10, ge=1)
    embed_dim: int = bounded(256, ge=8)
    depth: int = bounded(2, ge=0)
    num_heads: int = bounded(16, ge=1)
    mlp_ratio: float = bounded(4.0, gt=0)
    T: int = bounded(16, ge=1)
    tokenizer: Literal["spikformer", "spikingformer", "saformer"] = "spikformer"
    sps_pool: tuple[bool, ...] = (True, True, True, True)
    sps_residual: bool = True
    residual: Literal["spike", "membrane"] = "spike"
    attention: Literal["ssa", "sdsa", "sasa"] = "ssa"
    sasa: SASAConfig = field(default_factory=SASAConfig)
    qkv_bias: bool = False
    attn_scale: float = bounded(0.25, gt=0)
    learnable_scale: bool = False
    attn_v_threshold: float = bounded(0.5, gt=0)
    head: Literal["avgpool_fc", "sn_avgpool_fc", "fc_avgpool", "sn_fc_avgpool"] = "avgpool_fc"
    init: Literal["conv", "trunc_normal"] = "conv"
    neuron: NeuronConfig = field(default_factory=NeuronConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    engine: Literal["dense", "event", "auto"] = "dense"
    event_threshold: float = bounded(DEFAULT_THRESHOLD, ge=0, le=1)
    channels_last: bool = True
    fuse_bn_lif: bool = True

    def __post_init__(self) -> None:
        check_bounds(self, "model")
        check_engine(self.engine, self.event_threshold)
        checks = [
            (self.embed_dim % 8 == 0,
             f"embed_dim must be a positive multiple of 8 (SPS uses D/8), got {self.embed_dim}"),
            (len(self.sps_pool) == 4, f"sps_pool needs 4 entries (one per SPS stage), got {len(self.sps_pool)}"),
            (self.head in HEADS, f"head must be one of {', '.join(HEADS)}, got {self.head!r}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"invalid model config: {msg}")
        if self.embed_dim % self.num_heads:  # after the checks above: num_heads >= 1 here
            raise ValueError(
                f"invalid model config: embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}"
            )
        if self.grid < 1:
            raise ValueError(f"img_size {self.img_size} is too small for {sum(self.sps_pool)} poolings")
        if self.attention == "sasa" and self.sasa.aggregate and self.sasa.tokens > self.grid ** 2:
            raise ValueError(f"model.sasa.tokens={self.sasa.tokens} exceeds the {self.grid ** 2} tokens "
                             f"the tokenizer makes")

    @property
    def grid(self) -> int:
        """Token grid side after the tokenizer (tokens N = grid²)."""
        side = self.img_size
        for pool in self.sps_pool:
            side = (side - 1) // 2 + 1 if pool else side
        return side


SpikformerConfig = TransformerConfig  # the name checkpoints and older code use


class MLP(nn.Module):
    """Two-layer spiking MLP with RSM on the hidden layer. ``[T, B, N, D]`` -> same."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        D, hidden = cfg.embed_dim, int(cfg.embed_dim * cfg.mlp_ratio)
        membrane = cfg.residual == "membrane"
        self.in_lif = make_neuron(cfg.neuron) if membrane else None
        self.fc1 = EventLinear(D, hidden, engine=cfg.engine, threshold=cfg.event_threshold)
        self.fc1_bn = TokenBN(hidden)
        self.mask_hidden_pre = SpikeMask("mlp.hidden_pre")
        self.fc1_lif = make_neuron(cfg.neuron)
        self.mask_hidden = SpikeMask("mlp.hidden", feeds="fc2")
        self.fc2 = EventLinear(hidden, D, engine=cfg.engine, threshold=cfg.event_threshold)
        self.fc2_bn = TokenBN(D)
        self.fc2_lif = None if membrane else make_neuron(cfg.neuron)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_lif is not None:
            x = self.in_lif(x)
        h = self.mask_hidden(self.fc1_lif(self.mask_hidden_pre(self.fc1_bn(self.fc1(x)))))  # [T, B, N, hidden]
        out = self.fc2_bn(self.fc2(h))
        return out if self.fc2_lif is None else self.fc2_lif(out)


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.attn = ATTENTIONS[cfg.attention](cfg)
        self.mlp = MLP(cfg)
        self.add_attn = ResidualAdd()
        self.add_mlp = ResidualAdd()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.add_attn(x, self.attn(x))
        return self.add_mlp(x, self.mlp(x))


class SpikingTransformer(MaskableMixin, nn.Module):
    """A spiking vision transformer (Spikformer, Masked Spikformer, Spikingformer, SAFormer, or a mix).

    forward: ``[B, C, H, W]`` (static, repeated T times) or ``[T, B, C, H, W]`` (event frames)
    -> logits ``[B, num_classes]``.
    """

    family = "spikformer"  # the registry sets the family and variant of each model it builds

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.variant = self.family
        self.sps = build_tokenizer(config.tokenizer, config.in_channels, config.embed_dim, config.neuron,
                                   config.sps_pool, config.sps_residual, config.fuse_bn_lif)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        kind = config.head
        self.head_lif = make_neuron(config.neuron) if kind.startswith("sn_") else None
        self.pool = MeanPool(dims=(0, 2))  # [T, B, N, *] -> [B, *]: over time and tokens
        self.head = nn.Linear(config.embed_dim, config.num_classes)
        if kind.endswith("avgpool_fc"):
            mark_after_time_mean(self.head)  # runs once per sample, on averages
        self._init_weights()
        self.set_mask(config.mask)
        set_engine(self, config.engine, config.event_threshold)  # the tokenizer's convolutions and the neurons

    @property
    def mask_sites(self) -> tuple[str, ...]:
        """The sites this model has, in the order of its modules, the tokenizer's (``sps.conv1`` ..) last:
        they are never default sites, and the papers' sites lead the list."""
        tokenizer = set(self.sps.modules())
        masks = sorted((m for m in self.modules() if isinstance(m, SpikeMask)), key=lambda m: m in tokenizer)
        return tuple(dict.fromkeys(m.site for m in masks))

    def mask_layout(self, site: str) -> tuple[str | None, int | None]:
        """Structured masks: the token sites are ``[T, B, N, D]`` (D split into heads at SSA's ``attn.q`` /
        ``attn.k`` / ``attn.v``), SSA's ``attn.scores`` ``[T, B, H, N, N]``; the tokenizer's ``[T, B, C, H, W]``
        sites take element masks only."""
        attention = self.config.attention
        if site == "attn.scores":
            return ("scores", None) if attention == "ssa" else (None, None)
        if site in ("attn.q", "attn.k", "attn.v"):
            return "tokens", self.config.num_heads if attention == "ssa" else None
        if site in TOKEN_SITES:
            return "tokens", None
        return None, None

    @property
    def default_mask_sites(self) -> tuple[str, ...]:
        """The papers' RSM sites for this attention (Masked Spikformer's for SSA) and the MLP hidden spikes."""
        present = self.mask_sites
        return tuple(s for s in ATTENTIONS[self.config.attention].default_sites + ("mlp.hidden",) if s in present)

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
        """Tokens after the last block, ``[T, B, N, D]`` (integer-valued for ``spike``, real for ``membrane``)."""
        x = self.to_time_first(x)
        x = self.sps(channels_last_seq(x) if self.config.channels_last else x)
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        if self.head_lif is not None:
            x = self.head_lif(x)
        if self.config.head.endswith("avgpool_fc"):
            return self.head(self.pool(x))  # [B, classes]
        return self.pool(self.head(x))  # FC at every token and step, then the mean

    def extra_repr(self) -> str:
        c = self.config
        return (f"variant={self.variant!r}, T={c.T}, tokens={c.grid ** 2}, attention={c.attention}, "
                f"residual={c.residual}, mask: {c.mask.describe()}")


Spikformer = SpikingTransformer  # the name older code uses
