"""Probes of a model's spikes on one small batch, stored with a run as its ``probes`` artifact.

Three views, all plain numpy arrays (so a report reads them without torch):

- spike activation maps per time step at several masking ratios τ (MST Fig. 7, 001_9e47b243e487ffe3.txt):
  the model's default Random Spike Masking sites at τ, seeded; τ = 0 unmasked;
- a histogram of the values entering every synaptic layer (each ``nn.Linear`` / ``nn.Conv1d/2d`` the energy
  counter charges): spikes are 0/1, Spikformer's residual stream carries integers 0, 1, 2, ... and a first
  layer or a head reads real values (Spikingformer's appendix E, 004_42ddbf2f3cc1fe81.txt);
- the firing rate of every neuron layer at every time step.
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..conversion.neuron import StepIF
from ..masking import MaskableMixin, SpikeMask, check_ratio
from ..neurons import SpikingNeuron

__all__ = ["collect_probes", "PROBES_VERSION", "SYNAPTIC"]

PROBES_VERSION = 1
SYNAPTIC = (nn.Linear, nn.Conv1d, nn.Conv2d)  # the weight layers the energy counter charges


def collect_probes(model: nn.Module, x: torch.Tensor, *, ratios: Sequence[float] = (0.0, 0.5, 0.75), seed: int = 0,
                   layers: Sequence[str] | None = None, max_value: int = 16, max_samples: int = 4
                   ) -> dict[str, np.ndarray]:
    """Spike maps, synaptic input histograms and firing rates of ``model`` on the batch ``x``.

    model: a spikemask model (:class:`~spikemask.masking.MaskableMixin`) with spiking neurons (multi-step
        :class:`~spikemask.neurons.SpikingNeuron`, or the step-by-step IF neurons of a converted model).
    x: one batch as the model takes it, time-first ``[T, B, C, H, W]`` or static ``[B, C, H, W]``; only the
        first ``max_samples`` samples are used (the probes are meant to be cheap: 1-4 samples).
    ratios: the τ of the spike maps (R of them). seed: the masks' seed in every pass.
    layers: neuron modules to draw maps of (None: the last neuron before the first block, and the first
        block's first attention and first MLP neuron whose spikes go to a default masking site).
    max_value: the histogram has one bin per integer ``0 .. max_value - 1``, one for integers ``>= max_value``.

    The model runs in eval mode without gradients, R + 1 times: once per τ for the maps, once with its own
    mask config (seeded) for the histograms and firing rates. Its mode and masks are restored afterwards.

    Returns (M map layers, S synaptic layers, L neuron layers, R ratios, K = ``max_value``)::

        version       int64 []          PROBES_VERSION
        samples       int64 []          samples in the batch used; T int64 []: time steps
        ratios        float64 [R]
        map_layers    str [M]           the neuron modules drawn
        map_sources   str [M]           the module whose output is drawn: the SpikeMask that reads the
                                        neuron's output directly where there is one (the spikes actually
                                        sent on: fewer at τ > 0), else the neuron itself
        map_channels  int64 [M]         channels summed per pixel (the largest value a map can hold)
        map_<i>       int32 [R, T, H, W]  map of layer i for the batch's first sample: the number of
                                        channels spiking at each position and step. ``[C, H, W]`` maps sum
                                        over C; token maps ``[N, D]`` sum over D and lay the N tokens on
                                        their square grid (``[1, N]`` when N is not a square)
        hist_layers   str [S]           synaptic layers in call order
        hist_bins     str [K + 2]       "0", "1", ..., "K-1", ">=K", "non-integer"
        hist_counts   int64 [S, K + 2]  input values per bin over the batch and all steps; negative values
                                        count as non-integer (they cannot be spike counts); a converted
                                        model's spikes carry their threshold θ, so they are integers only
                                        when θ is
        rate_layers   str [L]           neuron layers in call order
        firing_rate   float64 [L, T]    spikes / neurons per layer and step (a spike: a non-zero output)
    """
    if not isinstance(model, MaskableMixin):
        raise TypeError(f"collect_probes needs a spikemask model with masking sites, got {type(model).__name__}")
    ratios = [check_ratio(float(r), "probe ratio") for r in ratios]
    if not ratios:
        raise ValueError("ratios is empty: give at least one masking ratio (0 draws the unmasked maps)")
    if max_value < 1:
        raise ValueError(f"max_value must be >= 1, got {max_value}")
    if x.dim() not in (4, 5):
        raise ValueError(f"collect_probes expects one batch [B, C, H, W] or [T, B, C, H, W], got {tuple(x.shape)}")
    x = x[:, :max_samples] if x.dim() == 5 else x[:max_samples]
    samples = x.shape[1] if x.dim() == 5 else x.shape[0]
    device = next(model.parameters()).device
    x = x.to(device)
    original = dataclasses.replace(model.config.mask)
    was_training = model.training
    model.eval()
    try:
        maps: list[dict[str, np.ndarray]] = []
        recorder = None
        for ratio in ratios:
            cfg = dataclasses.replace(original, ratio=ratio, sites=None, site_ratios={}, blocks=None,
                                      block_ratios={}, mode="always", seed=seed)
            model.set_mask(cfg)
            recorder = _Recorder(model, maps=True, max_value=max_value)
            with recorder, torch.no_grad():
                model(x)
            maps.append(recorder.maps())
        model.set_mask(dataclasses.replace(original, seed=seed))
        own = _Recorder(model, maps=False, max_value=max_value)
        with own, torch.no_grad():
            model(x)
    finally:
        model.set_mask(original)
        model.train(was_training)
    rates = own.rates()
    if not rates:
        raise ValueError(f"{type(model).__name__} has no spiking neurons to probe (an ANN: convert it first)")
    chosen = list(layers) if layers is not None else _default_layers(model, recorder)
    unknown = [n for n in chosen if n not in maps[0]]
    if unknown:
        raise ValueError(f"no neuron layer {unknown[0]!r} ran; neuron layers: {', '.join(recorder.order)}")
    out: dict[str, np.ndarray] = {
        "version": np.asarray(PROBES_VERSION, dtype=np.int64),
        "samples": np.asarray(samples, dtype=np.int64),
        "T": np.asarray(next(iter(rates.values())).shape[0], dtype=np.int64),
        "ratios": np.asarray(ratios, dtype=np.float64),
        "map_layers": np.asarray(chosen, dtype=str),
        "map_sources": np.asarray([recorder.sources.get(n, n) for n in chosen], dtype=str),
        "map_channels": np.asarray([recorder.channels[n] for n in chosen], dtype=np.int64),
    }
    for i, name in enumerate(chosen):
        out[f"map_{i}"] = np.stack([m[name] for m in maps]).astype(np.int32)  # [R, T, H, W]
    out["hist_layers"] = np.asarray(list(own.hist), dtype=str)
    out["hist_bins"] = np.asarray([str(v) for v in range(max_value)] + [f">={max_value}", "non-integer"], dtype=str)
    out["hist_counts"] = (np.stack(list(own.hist.values())) if own.hist
                          else np.zeros((0, max_value + 2))).astype(np.int64)
    out["rate_layers"] = np.asarray(list(rates), dtype=str)
    out["firing_rate"] = np.stack(list(rates.values())).astype(np.float64)  # [L, T]
    return out


def _default_layers(model: nn.Module, rec: _Recorder) -> list[str]:
    """The last neuron before the first block, then in the first block the first neuron feeding a default
    masking site in the attention and the first in the MLP (or its first two neurons if none feeds one)."""
    blocks = model.mask_blocks() if hasattr(model, "mask_blocks") else []
    order = rec.order
    if not blocks:
        picks = [order[0], order[len(order) // 2], order[-1]]
        return list(dict.fromkeys(picks))
    first = blocks[0] + "."
    inside = [n for n in order if n.startswith(first)]
    start = order.index(inside[0]) if inside else len(order)
    stem = [n for n in order[:start] if not any(n.startswith(b + ".") for b in blocks)]
    defaults = set(getattr(model, "default_mask_sites", ()))
    chosen: list[str] = stem[-1:]
    seen_kinds: set[str] = set()
    for name in inside:
        site = rec.feeds_site.get(name)
        if site in defaults and site.split(".")[0] not in seen_kinds:
            seen_kinds.add(site.split(".")[0])
            chosen.append(name)
    if len(chosen) == len(stem[-1:]):
        chosen += inside[:2]
    return chosen or order[:1]


class _Recorder:
    """Forward hooks: per-neuron spike maps (first sample) and rates, per-synapse input histograms."""

    def __init__(self, model: nn.Module, *, maps: bool, max_value: int) -> None:
        self.model, self.want_maps, self.K = model, maps, max_value
        self.order: list[str] = []  # neuron layers in call order
        self.stepwise: dict[str, bool] = {}  # one call per step ([B, ...]) rather than one per sequence
        self.fired: dict[str, list[torch.Tensor]] = {}  # neuron -> firing rates, [T, B] or one [B] per step
        self.drawn: dict[str, list[torch.Tensor]] = {}  # neuron -> first sample's spikes [t, 1, ...] per call
        self.channels: dict[str, int] = {}
        self.sources: dict[str, str] = {}  # neuron -> the module drawn
        self.feeds_site: dict[str, str] = {}  # neuron -> site of the mask that reads its output directly
        self.hist: dict[str, np.ndarray] = {}
        # the last output of each neuron, weakly held: a mask reading exactly that tensor reads this neuron
        self._outputs: dict[str, tuple[weakref.ref, int]] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> _Recorder:
        for name, module in self.model.named_modules():
            if isinstance(module, (SpikingNeuron, StepIF)):
                self._handles.append(module.register_forward_hook(self._neuron(name, isinstance(module, StepIF))))
            elif isinstance(module, SpikeMask) and self.want_maps:
                self._handles.append(module.register_forward_hook(self._mask(name)))
            elif isinstance(module, SYNAPTIC) and not self.want_maps:
                self._handles.append(module.register_forward_hook(self._synapse(name)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._outputs.clear()

    def _first(self, neuron: str, spikes: torch.Tensor) -> torch.Tensor:
        """The first sample, time-first: ``[T, 1, ...]`` (a step-wise call gives ``[1, 1, ...]``)."""
        return spikes[:1].unsqueeze(0) if self.stepwise[neuron] else spikes[:, :1]

    def _neuron(self, name: str, step: bool):
        def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            spikes = out.detach() != 0
            if name not in self.fired:
                self.order.append(name)
                self.stepwise[name] = step
                self.fired[name], self.drawn[name] = [], []
                self.sources[name] = name
            self.fired[name].append(spikes.flatten(1 if step else 2).float().mean(-1))  # [B] or [T, B]
            if self.want_maps:
                self.drawn[name].append(self._first(name, spikes))
                self._outputs[name] = (weakref.ref(out), len(self.drawn[name]) - 1)

        return hook

    def _mask(self, name: str):
        def hook(module: SpikeMask, args: tuple, out: torch.Tensor) -> None:
            for neuron, (ref, index) in self._outputs.items():
                if ref() is args[0]:
                    self.feeds_site[neuron] = module.site
                    self.sources[neuron] = name
                    self.drawn[neuron][index] = self._first(neuron, out.detach() != 0)
                    return

        return hook

    def _synapse(self, name: str):
        def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            v = args[0].detach().flatten()
            whole = (v == torch.round(v)) & (v >= 0)
            counts = torch.bincount(v[whole].clamp(max=self.K).long(), minlength=self.K + 1)
            row = np.zeros(self.K + 2, dtype=np.int64)
            row[: self.K + 1] = counts.cpu().numpy()
            row[-1] = int(v.numel() - int(whole.sum()))
            self.hist[name] = self.hist.get(name, 0) + row

        return hook

    def rates(self) -> dict[str, np.ndarray]:
        """Firing rate per neuron layer ``[T]`` (mean over the batch)."""
        out = {}
        for name in self.order:
            parts = self.fired[name]
            seq = torch.stack(parts) if self.stepwise[name] else torch.cat(parts)  # [T, B]
            out[name] = seq.mean(1).cpu().numpy()
        return out

    def maps(self) -> dict[str, np.ndarray]:
        """Per neuron layer ``[T, H, W]``: spiking channels per position of the first sample."""
        out = {}
        for name in self.order:
            seq = torch.cat(self.drawn[name])[:, 0]  # [T, ...] of the first sample
            grid, channels = _grid(seq)
            self.channels[name] = channels
            out[name] = grid.cpu().numpy()
        return out


def _grid(seq: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``[T, ...]`` spikes of one sample -> (``[T, H, W]`` counts of spiking channels, channels summed)."""
    T = seq.shape[0]
    s = seq.to(torch.int32)
    if s.dim() == 4:  # [T, C, H, W]
        return s.sum(1), seq.shape[1]
    if s.dim() == 3:  # [T, N, D] tokens
        n = s.shape[1]
        side = math.isqrt(n)
        counts = s.sum(2)  # [T, N]
        return (counts.view(T, side, side) if side * side == n else counts.view(T, 1, n)), seq.shape[2]
    return s.reshape(T, 1, -1), 1  # anything else: one row, each element its own position
