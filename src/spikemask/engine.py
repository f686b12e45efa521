"""Event-driven inference for the linear layers and 3x3 convolutions that read spikes.

A linear layer fed binary spikes ``x`` computes ``y = b + Σ_{j: x_j = 1} W[:, j]``: a gather-add of the
weight columns of the active inputs, no multiplications and work in proportion to the spikes. Here it
runs as one ``embedding_bag(mode="sum")`` over the transposed weight, one bag per input row, after
building the event list (active column indices + row offsets) of ``x`` once. Spike counts (non-negative
whole numbers: Spikformer's residual stream adds spikes, so its q/k/v and fc1 read 0, 1, 2, ...) take the
same gather weighted by the counts (``per_sample_weights``).

Building the event list costs about as much as a pass of ``torch.nonzero`` (slow on CPU: several ns per
element); this module uses one ``!= 0`` pass and NumPy's ``flatnonzero`` on its ``bool`` view (several
times faster), checks the kind (binary / counts / real) on the events' values only, and caches the list
of the recent inputs, so the Q, K and V projections that read the same spikes build it once. A neuron that
runs compiled writes the list of its spikes while it fires (:func:`remember_events`), so the layer that reads
them builds nothing.

A 3x3 convolution of spikes is the same gather-add over each output pixel's neighbourhood: the tokenizers'
convolutions (:class:`Conv2d`) run it as a small compiled loop (:mod:`spikemask.kernels`, Numba, optional),
from the event list of the input's pixels (``[N, H, W, C]`` rows, free for channels-last frames), when the
convolution is wide enough to gain (:func:`conv_takes_events`).

Engines (per :class:`Linear` / :class:`Conv2d`, set by ``TransformerConfig.engine`` or :func:`set_engine`):

* ``dense``: ``F.linear`` always (the default; training always runs dense).
* ``event``: the gather-add whenever it is valid (eval mode, no autograd, spikes or spike counts of the
  weight's dtype on CPU; for convolutions also their form and Numba), else the dense fallback.
* ``auto``: as ``event``, but only when the input's density (fraction of non-zeros) is below ``threshold``.

Outputs equal the dense path to float rounding (sums in another order). Measured crossover and limits:
docs/engine.md; benchmark: benchmarks/bench_event.py.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import kernels

__all__ = ["ENGINES", "DEFAULT_THRESHOLD", "CONV_MIN_CHANNELS", "Conv2d", "Linear", "apply_engine", "conv2d",
           "conv_takes_events", "event_linear", "event_list", "is_binary", "is_count", "known_positions", "linear",
           "remember_events", "set_engine", "check_engine"]

ENGINES = ("dense", "event", "auto")
DEFAULT_THRESHOLD = 0.15  # density below which "auto" gathers: the dense/event crossover of benchmarks/bench_event.py
CONV_MIN_CHANNELS = 128  # narrower 3x3 convolutions stay dense: they gain only at low density (bench_event.py)


def check_engine(engine: str, threshold: float) -> None:
    """Raise ``ValueError`` unless ``engine`` is one of :data:`ENGINES` and ``0 <= threshold <= 1``."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"event_threshold must be in [0, 1] (a density), got {threshold}")


def is_binary(x: torch.Tensor) -> bool:
    """Whether every element of ``x`` is 0 or 1 (NaN is not)."""
    return x.numel() > 0 and _Events(x).binary


def is_count(x: torch.Tensor) -> bool:
    """Whether every element of ``x`` is a non-negative whole number (spike counts) and not all are 0 or 1."""
    return x.numel() > 0 and _Events(x).kind == "count"


def _events(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(flat row-major positions, column indices, row offsets) of the ``True`` entries of ``mask [R, C]``."""
    R, C = mask.shape
    if mask.device.type == "cpu":
        flat = np.flatnonzero(mask.contiguous().numpy())  # [nnz], row-major, sorted
        offsets = np.searchsorted(flat, np.arange(R + 1, dtype=np.int64) * C)  # first event of each row
        flat = torch.from_numpy(flat)
        return flat, flat % C, torch.from_numpy(offsets)
    rows, cols = mask.nonzero(as_tuple=True)
    offsets = torch.zeros(R + 1, dtype=torch.long, device=mask.device)
    offsets[1:] = torch.bincount(rows, minlength=R).cumsum(0)
    return rows * C + cols, cols, offsets


def event_list(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Event list of a ``bool`` matrix ``[R, C]``: (column indices of the ``True`` entries, row by row,
    ``[nnz]``; offsets ``[R + 1]``, row r's events are ``indices[offsets[r]:offsets[r + 1]]``), int64."""
    return _events(mask)[1:]


class _Events:
    """Density, kind and event list of one input tensor (``[..., C]`` viewed as ``[R, C]``).

    One pass over ``x`` (the ``!= 0`` mask, counted by NumPy), then everything else costs O(events): the
    list (``flatnonzero``, built only when asked for), the values at the events, and from them the kind:
    ``"binary"`` (every non-zero is 1: a plain gather-add), ``"count"`` (non-negative whole numbers, e.g.
    Spikformer's residual stream of summed spikes: a gather-add weighted by the counts) or ``None``
    (anything else: real values, negatives, NaN or inf; the layer runs dense).

    ``x`` is held weakly and the bool mask only until the list is built (or :meth:`release`): the cache of
    recent inputs never keeps an activation alive. :meth:`from_positions` takes the list a neuron wrote.
    """

    __slots__ = ("density", "_x", "_mask", "_flat", "_list", "_kind", "_values")

    def __init__(self, x: torch.Tensor) -> None:
        self._x, self._mask, self._flat, self._list, self._kind, self._values = (None,) * 6
        self.density = 1.0
        if x.numel() == 0 or x.is_complex() or x.is_sparse:
            return
        self._x = weakref.ref(x)
        self._mask = self._bool(x)
        self.density = (np.count_nonzero(self._mask.numpy()) if x.device.type == "cpu"
                        else int(self._mask.sum())) / self._mask.numel()

    @classmethod
    def from_positions(cls, x: torch.Tensor, positions: np.ndarray) -> _Events:
        """The events of binary ``x`` from the ascending flat positions of its ones (no pass over ``x``)."""
        ev = cls.__new__(cls)
        ev._mask, ev._list, ev._values = None, None, None
        ev._x, ev._kind, ev._flat = weakref.ref(x), "binary", torch.from_numpy(positions)
        ev.density = len(positions) / x.numel()
        return ev

    @staticmethod
    def _bool(x: torch.Tensor) -> torch.Tensor:
        return (x.reshape(-1, x.shape[-1]) != 0).contiguous()  # [R, C]

    def _input(self) -> torch.Tensor:
        x = self._x() if self._x is not None else None
        if x is None:
            raise RuntimeError("the input of these events is gone")  # callers hold x while they ask
        return x

    def release(self) -> None:
        """Drop the bool mask (the density stays; the list can still be built from the input)."""
        self._mask = None

    def list(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._list is None and self._flat is not None:  # positions given (a neuron's): columns and offsets
            x = self._input()
            C = x.shape[-1]
            R = x.numel() // C
            flat = self._flat.numpy()
            offsets = np.searchsorted(flat, np.arange(R + 1, dtype=np.int64) * C)
            self._list = (self._flat % C, torch.from_numpy(offsets))
        elif self._list is None:
            mask = self._mask if self._mask is not None else self._bool(self._input())
            self._flat, *rest = _events(mask)
            self._list, self._mask = tuple(rest), None
        return self._list

    @property
    def kind(self) -> str | None:
        if self._x is not None and self._kind is None:
            self.list()
            values = self._input().reshape(-1)[self._flat]  # [nnz]: O(events) (a copy first if x is strided)
            if bool((values == 1).all()):
                self._kind = "binary"
            elif bool(((values >= 0) & (values == values.round()) & values.isfinite()).all()):
                self._kind, self._values = "count", values
            else:
                self._kind = "real"
        return None if self._kind == "real" else self._kind

    @property
    def binary(self) -> bool:
        return self.kind == "binary"

    def weights(self) -> torch.Tensor | None:
        """Per-event weights for the gather-add (None for binary inputs: every weight is 1)."""
        return self._values if self.kind == "count" else None


_cache = threading.local()  # per thread: the recent inputs (weakly held) and their _Events, newest first
_RECENT = 4  # Spikingformer's Q, K and V read one input while the neurons of Q and K publish theirs in between


def _key(x: torch.Tensor) -> tuple:
    return (x._version, x.shape, x.stride(), x.storage_offset())


def _remember(x: torch.Tensor, key: tuple, ev: _Events) -> None:
    alive = [e for e in getattr(_cache, "recent", ()) if e[0]() is not None and e[0]() is not x]
    _cache.recent = [(weakref.ref(x), key, ev), *alive[: _RECENT - 1]]


def _events_of(x: torch.Tensor) -> _Events:
    """The :class:`_Events` of ``x``, reused while ``x`` is the same live, unmodified tensor."""
    if x.is_inference():  # no version counter to tell an in-place change: no reuse
        return _Events(x)
    key = _key(x)
    for ref, k, ev in getattr(_cache, "recent", ()):
        if ref() is x and k == key:
            return ev
    ev = _Events(x)
    _remember(x, key, ev)
    return ev


def known_positions(x: torch.Tensor) -> np.ndarray | None:
    """The ascending flat positions of the ones of binary ``x`` if its event list is already at hand (written by
    a neuron, or built by a layer that read ``x``), else None; builds nothing."""
    if x.is_inference():
        return None
    key = _key(x)
    for ref, k, ev in getattr(_cache, "recent", ()):
        if ref() is x and k == key and ev._flat is not None and ev._kind == "binary":
            return ev._flat.numpy()
    return None


def remember_events(x: torch.Tensor, positions: np.ndarray) -> None:
    """Record the event list of spikes ``x`` (0/1 values; ``positions``: the ascending flat positions of its
    ones, row-major, as a neuron writes them while it fires): the layers that read ``x`` next gather from it
    instead of building it. Ignored for inference-mode tensors (no version counter to check them by)."""
    if x.is_inference() or x.dim() == 0 or x.numel() == 0 or not x.is_contiguous():
        return
    _remember(x, _key(x), _Events.from_positions(x, positions))


def _gather_add(events: tuple[torch.Tensor, torch.Tensor], table: torch.Tensor, bias: torch.Tensor | None,
                lead: torch.Size, weights: torch.Tensor | None = None) -> torch.Tensor:
    indices, offsets = events
    if weights is not None:
        weights = weights.to(table.dtype)
    y = F.embedding_bag(indices, table, offsets, mode="sum", per_sample_weights=weights,
                        include_last_offset=True)  # [R, out]
    if bias is not None:
        y += bias
    return y.view(*lead, table.shape[1])


def event_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                 table: torch.Tensor | None = None, reuse: bool = True) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for spikes ``x [..., in]`` as a gather-add of weight columns.

    ``weight [out, in]``; ``table``: ``weight.t()`` made contiguous (``[in, out]``), if the caller keeps one.
    ``reuse``: take the event list of the previous call if ``x`` is the same unmodified tensor (False:
    always build it). ``x`` must be binary or hold spike counts (:func:`is_binary`, :func:`is_count`;
    counts weight their events), else ``ValueError``; no autograd.
    """
    if table is None:
        table = weight.detach().t().contiguous()  # [in, out]: one row per input
    events = _events_of(x) if reuse else _Events(x)
    if events.kind is None:
        raise ValueError("event_linear needs spikes: an input of 0/1 values or of non-negative whole numbers")
    return _gather_add(events.list(), table, bias, x.shape[:-1], events.weights())


def _autograd_needed(x: torch.Tensor, module: nn.Linear) -> bool:
    return torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in module.parameters()))


def _events_to_gather(module: nn.Module, x: torch.Tensor, rows: torch.Tensor, engine: str,
                      threshold: float) -> _Events | None:
    """The events of ``rows`` (``x`` viewed with its features last; the caller holds it while it uses the
    events, which keep it weakly) when ``module`` may gather them on
    ``engine``: eval mode, no autograd, a CPU input of the weight's dtype, spikes or counts, for ``auto`` a
    density below ``threshold``; else None (run dense)."""
    if (engine == "dense" or module.training or x.device.type != "cpu" or x.dtype != module.weight.dtype
            or x.numel() == 0 or _autograd_needed(x, module)):
        return None
    ev = _events_of(rows)
    if (engine == "auto" and ev.density >= threshold) or ev.kind is None:
        ev.release()
        return None
    return ev


def linear(module: nn.Linear, x: torch.Tensor, engine: str = "dense",
           threshold: float = DEFAULT_THRESHOLD) -> tuple[torch.Tensor, str]:
    """``module``'s output on ``x`` by ``engine`` and the path taken (``"dense"`` or ``"event"``).

    Computes without calling ``module`` (hooks do not fire here: call the module for that, as
    :class:`Linear` does). Event paths need eval mode, no autograd, a CPU input of the weight's dtype
    and spikes (binary, or counts: see :class:`_Events`; ``auto``: also a density below ``threshold``);
    anything else runs dense.
    """
    ev = _events_to_gather(module, x, x, engine, threshold)
    if ev is None:
        return F.linear(x, module.weight, module.bias), "dense"
    table = module.event_table() if isinstance(module, Linear) else module.weight.detach().t().contiguous()
    return _gather_add(ev.list(), table, module.bias, x.shape[:-1], ev.weights()), "event"


class _EventLayer:
    """What :class:`Linear` and :class:`Conv2d` share: the engine and threshold, the path of the latest call
    and the cached gather table (rebuilt when the weight changes, in place or replaced; never pickled)."""

    def _init_engine(self, engine: str, threshold: float) -> None:
        check_engine(engine, threshold)
        self.engine, self.threshold = engine, float(threshold)
        self.last_path: str | None = None
        self._table: tuple[tuple, torch.Tensor] | None = None  # (weight key, table)

    def _make_table(self, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def event_table(self) -> torch.Tensor:
        """The gather table (one row per input: ``Linear`` ``[in, out]``, ``Conv2d`` ``[9 C, out]``)."""
        w = self.weight
        key = (w.data_ptr(), w._version, w.dtype, w.device)
        if self._table is None or self._table[0] != key:
            self._table = (key, self._make_table(w.detach()))
        return self._table[1]

    def _engine_repr(self) -> str:
        extra = "" if self.engine == "dense" else f", engine={self.engine}"
        return extra + (f", threshold={self.threshold}" if self.engine == "auto" else "")

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_table"] = None  # a cache: never pickled
        return state


class Linear(_EventLayer, nn.Linear):
    """``nn.Linear`` whose forward picks the dense or the event-driven path (see the module docstring).

    Same parameters, ``state_dict`` and ``repr`` as ``nn.Linear`` under the default ``engine="dense"``
    (``extra_repr`` names any other engine). Its class name is ``Linear`` on purpose: the energy
    counter and its report name layers by class (``"linear"``), and hooks see the same input and the
    same output either way. ``last_path`` records the path of the latest call (``"dense"``/``"event"``).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, engine: str = "dense",
                 threshold: float = DEFAULT_THRESHOLD, device=None, dtype=None) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self._init_engine(engine, threshold)

    def _make_table(self, w: torch.Tensor) -> torch.Tensor:
        return w.t().contiguous()  # [in, out]: one row per input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, self.last_path = linear(self, x, self.engine, self.threshold)
        return y

    def extra_repr(self) -> str:
        return super().extra_repr() + self._engine_repr()


def conv_takes_events(module: nn.Conv2d) -> bool:
    """Whether ``module`` has the event path's form: a 3x3 kernel, stride 1, padding 1 (zeros), no dilation
    or groups, and at least :data:`CONV_MIN_CHANNELS` output channels (a conservative cut: narrower ones gather
    little per event and gain only at low density, docs/engine.md)."""
    return (module.kernel_size == (3, 3) and module.stride == (1, 1) and module.padding == (1, 1)
            and module.dilation == (1, 1) and module.groups == 1 and module.padding_mode == "zeros"
            and module.out_channels >= CONV_MIN_CHANNELS)


def conv2d(module: nn.Conv2d, x: torch.Tensor, engine: str = "dense",
           threshold: float = DEFAULT_THRESHOLD) -> tuple[torch.Tensor, str]:
    """``module``'s output on ``x [N, C, H, W]`` by ``engine`` and the path taken (``"dense"``/``"event"``).

    The event path (:func:`spikemask.kernels.conv3x3_events`) needs what :func:`linear` needs (eval mode,
    no autograd, a CPU input of the weight's dtype, spikes or counts, for ``auto`` a density below
    ``threshold``), a convolution of the form :func:`conv_takes_events` accepts, and Numba; anything else
    runs dense. The output keeps the input's memory format (channels-last frames in, channels-last out).
    """
    ev = None
    if x.dim() == 4 and conv_takes_events(module) and kernels.available():
        pixels = x.permute(0, 2, 3, 1)  # [N, H, W, C]: a free view of channels-last frames
        ev = _events_to_gather(module, x, pixels, engine, threshold)
    if ev is None:
        return module._conv_forward(x, module.weight, module.bias), "dense"
    indices, offsets = ev.list()
    weights = ev.weights()
    table = module.event_table() if isinstance(module, Conv2d) else _conv_table(module.weight.detach())
    N, _, H, W = x.shape
    out = kernels.conv3x3_events(indices.numpy(), offsets.numpy(), None if weights is None else weights.numpy(),
                                 table.numpy(), (N, H, W), threads=torch.get_num_threads())
    y = torch.from_numpy(out).view(N, H, W, -1).permute(0, 3, 1, 2)  # [N, O, H, W], channels-last memory
    if module.bias is not None:
        y += module.bias.view(1, -1, 1, 1)
    if not x.is_contiguous(memory_format=torch.channels_last):
        y = y.contiguous()  # the dense path's layout for NCHW input
    return y, "event"


def _conv_table(w: torch.Tensor) -> torch.Tensor:
    return w.permute(2, 3, 1, 0).reshape(-1, w.shape[0]).contiguous()  # [O, C, 3, 3] -> [9 C, O], rows (ky, kx, c)


class Conv2d(_EventLayer, nn.Conv2d):
    """``nn.Conv2d`` whose forward picks the dense or the event-driven path (:func:`conv2d`); otherwise the
    same module (parameters, ``state_dict``, class name for the energy counter), as :class:`Linear`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", *, engine: str = "dense",
                 threshold: float = DEFAULT_THRESHOLD, device=None, dtype=None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device=device, dtype=dtype)
        self._init_engine(engine, threshold)

    def _make_table(self, w: torch.Tensor) -> torch.Tensor:
        return _conv_table(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, self.last_path = conv2d(self, x, self.engine, self.threshold)
        return y

    def extra_repr(self) -> str:
        return super().extra_repr() + self._engine_repr()


def apply_engine(model: nn.Module, engine: str | None, threshold: float | None = None) -> None:
    """Run ``model`` (a loaded spiking transformer) with ``engine`` from now on, its config saying so too;
    ``None`` changes nothing. Training still runs dense; outputs are the same to float rounding.

    Raises ``ValueError`` for a model without event-capable layers (the converted CNNs, Swin-T), so a study
    asked for the event path never silently measures the dense one.
    """
    if engine is None:
        return
    config = getattr(model, "config", None)
    if not hasattr(config, "engine"):
        name = getattr(model, "variant", type(model).__name__)
        raise ValueError(f"engine {engine!r} applies to the spiking transformers (Spikformer, Spikingformer, "
                         f"SAFormer); {name} computes densely: drop the engine option for it")
    check_engine(engine, config.event_threshold if threshold is None else threshold)
    config.engine = engine
    if threshold is not None:
        config.event_threshold = float(threshold)
    set_engine(model, engine, threshold)


def set_engine(model: nn.Module, engine: str, threshold: float | None = None) -> int:
    """Set the engine (and threshold) of every :class:`Linear` and :class:`Conv2d` in ``model``; returns how
    many. Its spiking neurons publish their spikes' event lists under the event engines (``emit_events``)."""
    check_engine(engine, DEFAULT_THRESHOLD if threshold is None else threshold)
    n = 0
    for m in model.modules():
        if isinstance(m, _EventLayer):
            check_engine(engine, m.threshold if threshold is None else threshold)
            m.engine = engine
            if threshold is not None:
                m.threshold = float(threshold)
            n += 1
        elif hasattr(m, "emit_events"):  # a spikemask.neurons.SpikingNeuron (not imported: it imports this)
            m.emit_events = engine != "dense"
    return n
