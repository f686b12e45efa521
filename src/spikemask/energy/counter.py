"""Forward hooks that count what every synaptic layer, mask and neuron actually processes.

The counter sees the tensor each layer consumes, after any mask: a mask is credited only through
the operations it removes, never through a ``(1 - τ)`` factor on a rate measured after it.
Conventions (what is an AC, what is a MAC) are applied later, by :mod:`.report`.

Layers counted: ``nn.Conv1d/2d``, ``nn.Linear``, :class:`~spikemask.layers.SpikeMatmul` (synaptic),
max/avg pooling and :class:`~spikemask.layers.MeanPool`. BatchNorm is assumed folded into the
preceding weights (not counted); residual additions, biases and the attention scale (foldable
into the next threshold) are not synaptic operations and are not counted either.

A layer runs at every one of the T steps unless the model marked it as running after the mean
over time (:func:`~spikemask.layers.mark_after_time_mean`, e.g. the head): such a layer runs once
per sample on real-valued averages. The mark, not the tensor shape, decides: at T = 1 the shapes
of the two kinds cannot be told apart.

Masks also report the random numbers they draw (one per element per step; per sample when shared
over time; only at arriving spikes with ``draw="arriving"``; one per token, head or channel for a
structured mask), a cost the compute total leaves out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..conversion.neuron import StepIF
from ..layers import HadamardSum, MeanPool, ResidualAdd, SpikeGate, SpikeMatmul, TokenPool, is_after_time_mean
from ..masking import MaskConfig, SpikeMask
from ..neurons import SpikingNeuron
from . import counting as C

__all__ = ["LayerStats", "MaskStats", "NeuronStats", "AdditionStats", "EnergyCounter"]

_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, MeanPool)
_PAIRS = (SpikeMatmul, HadamardSum, SpikeGate)  # products of two activation tensors
# computed on real values even in a converted SNN: MAC-equivalents per element (a convention, docs/energy.md)
ANALOG_COST = {nn.Softmax: 2.0, nn.LayerNorm: 2.0}  # softmax: exp + division; LayerNorm: normalise + affine
_ANALOG = tuple(ANALOG_COST)
_COUNTED = (nn.Conv1d, nn.Conv2d, nn.Linear, TokenPool) + _PAIRS + _POOLS + _ANALOG
_OP_NAMES = {SpikeMatmul: "matmul", HadamardSum: "hadamardsum", SpikeGate: "gate", TokenPool: "tokenpool",
             MeanPool: "meanpool", nn.Softmax: "softmax", nn.LayerNorm: "layernorm"}


@dataclass
class LayerStats:
    """Totals over every call and sample seen (divide by ``samples`` for per-sample numbers)."""

    name: str
    op: str
    order: int
    steps: int = 1  # time steps per sample at which this layer runs (T, or 1 after the time mean)
    after_time_mean: bool = False  # marked by the model: runs once per sample on time averages
    encoding: str = C.BINARY  # worst encoding of its (activation) inputs over all calls
    dense_macs: float = 0.0  # conventional MACs, all steps
    exact: float = 0.0  # weight uses of non-zero inputs (matmul: both factors non-zero)
    valued: float = 0.0  # value-weighted weight uses (an input n counts n times)
    fr_formula: float = 0.0  # Σ rate x dense MACs (the papers' fr · T · FLOPs), cross-check
    input_nnz: float = 0.0
    input_numel: float = 0.0
    input_sum: float = 0.0
    masks: list[str] = field(default_factory=list)  # masks at the config's named sites whose output this layer reads

    def merge_encoding(self, enc: str) -> None:
        if C.ENCODINGS.index(enc) > C.ENCODINGS.index(self.encoding):
            self.encoding = enc


@dataclass
class MaskStats:
    name: str
    site: str
    nominal: float
    active: bool
    consumer: str | None
    draw: str = "all"  # where it draws random numbers: "all" elements or "arriving" spikes only
    shared: bool = False  # one mask per sample, shared over the T steps
    nnz_in: float = 0.0
    nnz_out: float = 0.0
    numel: float = 0.0
    draws: float = 0.0  # random numbers drawn
    structure: str = "element"  # the unit of one keep/drop decision (MaskConfig.structure)


@dataclass
class AdditionStats:
    """Elementwise additions of two activation tensors (residuals, merges): not synaptic, reported apart."""

    name: str
    adds: float = 0.0  # additions of a non-zero second operand (an event-driven adder skips zeros)
    dense: float = 0.0  # every element
    encoding: str = C.BINARY  # worst encoding of the two operands


@dataclass
class NeuronStats:
    name: str
    kind: str
    updates: float = 0.0
    spikes: float = 0.0


def _op_name(module: nn.Module) -> str:
    return _OP_NAMES.get(type(module), type(module).__name__.lower())


class EnergyCounter:
    """Context manager that attaches the hooks to ``model``; ``dense=True`` treats every input as firing.

    In dense mode the values are ignored: each layer is charged the weight uses of a fully active
    input, thinned by the nominal keep probability ``1 - τ`` of every mask feeding it (the papers'
    formula with fr = 1), so the count is deterministic and needs no data.
    """

    def __init__(self, model: nn.Module, *, dense: bool = False) -> None:
        self.model = model
        self.dense = dense
        self.layers: dict[str, LayerStats] = {}
        self.masks: dict[str, MaskStats] = {}
        self.neurons: dict[str, NeuronStats] = {}
        self.additions: dict[str, AdditionStats] = {}
        self.samples = 0
        self.T: int | None = None
        self._batch: tuple[int, int] | None = None
        self._handles: list = []
        self._consumers: dict[str | None, list[tuple[str, SpikeMask]]] = {}
        self._named_sites: set[str] | None = None

    # ---------------------------------------------------------------- hooks
    def __enter__(self) -> "EnergyCounter":
        mask_cfg = getattr(getattr(self.model, "config", None), "mask", None)
        # a layer lists the masks at the sites its model's config names (resolved: the defaults when none are)
        self._named_sites = mask_cfg.named_sites() if isinstance(mask_cfg, MaskConfig) else None
        named = dict(self.model.named_modules())
        for name, module in named.items():
            if isinstance(module, SpikeMask):
                parent = name.rpartition(".")[0]
                consumers = [f"{parent}.{f}" if parent else f for f in module.feeds]
                for consumer in consumers:
                    self._consumers.setdefault(consumer, []).append((name, module))
                self.masks.setdefault(name, MaskStats(name, module.site, module.ratio, module.enabled,
                                                      ", ".join(consumers) or None, draw=module.draw,
                                                      shared=module.share_over_time,
                                                      structure=module.structure))
                self._handles.append(module.register_forward_hook(self._mask_hook(name)))
            elif isinstance(module, (SpikingNeuron, StepIF)):
                kind = module.kind if isinstance(module, StepIF) else module.cfg.kind
                self.neurons.setdefault(name, NeuronStats(name, kind))
                self._handles.append(module.register_forward_hook(self._neuron_hook(name)))
            elif isinstance(module, _COUNTED):
                self._handles.append(module.register_forward_hook(self._layer_hook(name)))
            elif isinstance(module, ResidualAdd):
                self.additions.setdefault(name, AdditionStats(name))
                self._handles.append(module.register_forward_hook(self._addition_hook(name)))
        self._handles.append(self.model.register_forward_pre_hook(self._root_hook))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _root_hook(self, module: nn.Module, args: tuple) -> None:
        x = args[0]
        if x.dim() == 5:  # [T, B, C, H, W] events
            T, B = x.shape[0], x.shape[1]
        else:  # [B, C, H, W] static, repeated over the model's T (an unconverted ANN runs once)
            cfg = getattr(module, "config", None)
            T = 1 if getattr(cfg, "converted", True) is False else int(getattr(cfg, "T", 1))
            B = x.shape[0]
        if self.T is not None and T != self.T:
            raise ValueError(f"energy counter saw T={T} after T={self.T}; measure one T per counter")
        self.T, self._batch = T, (T, B)
        self.samples += B

    def _stats(self, name: str, module: nn.Module) -> LayerStats:
        if name not in self.layers:
            masks = [n for n, m in self._consumers.get(name, [])
                     if self._named_sites is None or m.site in self._named_sites]
            after = is_after_time_mean(module)
            steps = 1 if after else self._batch[0]
            self.layers[name] = LayerStats(name, _op_name(module), len(self.layers), steps, after, masks=masks)
        return self.layers[name]

    def _keep(self, name: str) -> float:
        keep = 1.0
        for _, m in self._consumers.get(name, []):
            if m.enabled:
                keep *= 1.0 - m.ratio
        return keep

    def _layer_hook(self, name: str):
        def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            with torch.no_grad():
                self._count(name, module, args, out)

        return hook

    def _count(self, name: str, module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        st = self._stats(name, module)
        if isinstance(module, _POOLS):
            rec = self._pool(module, args[0], out)
        elif isinstance(module, _ANALOG):
            n = float(args[0].numel()) * ANALOG_COST[type(module)]
            rec = (n, n, n, n, float((args[0] != 0).sum()), args[0].numel(), float(args[0].sum()), C.REAL)
        elif isinstance(module, _PAIRS):
            rec = self._pairs(name, module, *args)
        elif isinstance(module, TokenPool):
            rec = self._aggregate(name, module, args[0])
        else:
            rec = self._weighted(name, module, args[0], out)
        dense, exact, valued, fr, nnz, numel, total, enc = rec
        if st.after_time_mean:  # time averages: real-valued by construction, at any T (even when all zero)
            enc = C.REAL
        st.dense_macs += dense
        st.exact += exact
        st.valued += valued
        st.fr_formula += fr
        st.input_nnz += nnz
        st.input_numel += numel
        st.input_sum += total
        st.merge_encoding(enc)

    def _pool(self, module: nn.Module, x: torch.Tensor, out: torch.Tensor) -> tuple:
        if isinstance(module, MeanPool):
            dense = float(x.numel())  # one add per input element
        else:
            k = module.kernel_size  # one op per window element
            dims = 2 if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)) else 1
            dense = float(out.numel()) * (math.prod(k) if isinstance(k, tuple) else k**dims)
        if self.dense:
            return dense, dense, dense, dense, x.numel(), x.numel(), float(x.numel()), C.BINARY
        return (dense, dense, dense, dense, float((x != 0).sum()), x.numel(), float(x.sum()), C.encoding_of(x))

    def _aggregate(self, name: str, module: TokenPool, x: torch.Tensor) -> tuple:
        """Token pooling ``[T, B, N, D]``: one addition per non-zero input in each window that holds it (its
        value does not matter: one add); adaptive windows overlap when N' does not divide N."""
        windows = module.windows(x.shape[2])
        numel = float(x.numel())
        dense = numel / x.shape[2] * sum(e - s for s, e in windows) if x.shape[2] else 0.0
        if self.dense:
            keep = self._keep(name)
            return dense, dense * keep, dense * keep, dense * keep, numel * keep, numel, numel * keep, C.BINARY
        nz = (x != 0).sum(dim=(0, 1, 3), dtype=torch.float64)  # [N]: non-zero inputs per token
        adds = float(sum(nz[s:e].sum() for s, e in windows))
        nnz = float(nz.sum())
        fr = nnz / numel * dense if numel else 0.0
        return dense, adds, adds, fr, nnz, numel, float(x.sum()), C.encoding_of(x)

    def _pairs(self, name: str, module: nn.Module, a: torch.Tensor, b: torch.Tensor) -> tuple:
        """Products of two activation tensors: terms with both factors non-zero (matmul or elementwise)."""
        matmul = isinstance(module, SpikeMatmul)
        dense = C.matmul_dense_macs(a, b) if matmul else C.elementwise_dense(a, b)
        pairs = C.matmul_pairs if matmul else C.elementwise_pairs
        numel = a.numel() + b.numel()
        if self.dense:
            keep = self._keep(name)
            return dense, dense * keep, dense * keep, dense * keep, numel * keep, numel, numel * keep, C.BINARY
        enc_a, enc_b = C.encoding_of(a), C.encoding_of(b)
        # one binary factor gates the other: a spike-driven accumulation of its values
        enc = C.BINARY if C.BINARY in (enc_a, enc_b) else max(enc_a, enc_b, key=C.ENCODINGS.index)
        nnz_a, nnz_b = float((a != 0).sum()), float((b != 0).sum())
        fr = nnz_a / a.numel() * nnz_b / b.numel() * dense if a.numel() and b.numel() else 0.0
        exact = pairs(a, b)
        valued = exact if enc_a == enc_b == C.BINARY else pairs(a, b, valued=True)
        return dense, exact, valued, fr, nnz_a + nnz_b, numel, float(a.sum()) + float(b.sum()), enc

    def _weighted(self, name: str, module: nn.Module, x: torch.Tensor, out: torch.Tensor) -> tuple:
        linear = isinstance(module, nn.Linear)
        dense = C.linear_dense_macs(x, module) if linear else C.conv_dense_macs(module, out)

        def uses(weights: torch.Tensor) -> float:
            return C.linear_weight_uses(weights, module) if linear else C.conv_weight_uses(x, module, out, weights)

        if self.dense:
            keep = self._keep(name)
            full = uses(torch.ones_like(x)) * keep
            return dense, full, full, dense * keep, x.numel() * keep, x.numel(), x.numel() * keep, C.BINARY
        nz = x != 0
        nnz = float(nz.sum())
        enc = C.encoding_of(x)
        exact = uses(nz)
        valued = exact if enc == C.BINARY else uses(x)  # spikes weigh 1: the same count
        return dense, exact, valued, nnz / x.numel() * dense, nnz, x.numel(), float(x.sum()), enc

    def _mask_hook(self, name: str):
        def hook(module: SpikeMask, args: tuple, out: torch.Tensor) -> None:
            x, st = args[0], self.masks[name]
            st.numel += x.numel()
            st.draws += self._draws(module, x)
            if self.dense:  # every input firing, thinned by the nominal keep rate
                st.nnz_in += x.numel()
                st.nnz_out += x.numel() * (1.0 - module.ratio if module.enabled else 1.0)
            else:
                st.nnz_in += float((x != 0).sum())
                st.nnz_out += float((out != 0).sum())

        return hook

    def _draws(self, module: SpikeMask, x: torch.Tensor) -> float:
        """Random numbers the mask draws on ``x`` ``[T, B, ...]`` (see :func:`~spikemask.masking.random_spike_mask`)."""
        if not module.enabled:
            return 0.0
        if module.structure != "element":  # one number per token / head / channel, not per element
            return float(module.draws(x, every_arrives=self.dense))
        if module.draw == "all" or self.dense:  # dense: every element is an arriving spike
            return float(math.prod(x.shape[1:]) if module.share_over_time else x.numel())
        arriving = x != 0
        if module.share_over_time:
            arriving = arriving.any(dim=0)  # one draw per position that fires at some step
        return float(arriving.sum())

    def _addition_hook(self, name: str):
        def hook(module: ResidualAdd, args: tuple, out: torch.Tensor) -> None:
            st = self.additions[name]
            x, branch = args
            st.dense += float(out.numel())
            st.adds += float(out.numel()) if self.dense else float((branch != 0).sum())
            if not self.dense:
                worst = max(C.encoding_of(x), C.encoding_of(branch), key=C.ENCODINGS.index)
                if C.ENCODINGS.index(worst) > C.ENCODINGS.index(st.encoding):
                    st.encoding = worst

        return hook

    def _neuron_hook(self, name: str):
        def hook(module: SpikingNeuron, args: tuple, out: torch.Tensor) -> None:
            st = self.neurons[name]
            st.updates += out.numel()
            st.spikes += out.numel() if self.dense else float((out != 0).sum())  # a converted spike carries θ

        return hook
