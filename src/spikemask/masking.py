"""Random Spike Masking (RSM): drop spikes at random, in training *and* inference.

RSM (MST, 001_9e47b243e487ffe3.txt; Masked Spikformer, 000_766e5557120f520b.txt) multiplies a
spike tensor by a Bernoulli mask with keep probability ``1 - τ``. Unlike dropout there is **no
rescaling** by ``1 / (1 - τ)``, and it stays on at inference: the point is that the masked spikes
are never sent, so the synaptic operations they would have caused are never paid for.

A mask lives at a named *site* of a model (``attn.q``, ``attn.k``, ``attn.scores``,
``mlp.hidden``, ...). Everything about it is in :class:`MaskConfig`, which is a field of every
model config and therefore travels inside every checkpoint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from .config import bounded, check_bounds, close_matches_hint

__all__ = ["MaskConfig", "SpikeMask", "random_spike_mask", "apply_rsm", "MaskableMixin", "check_ratio", "DRAW_MODES"]

DRAW_MODES = ("all", "arriving")


def check_ratio(ratio: float, where: str = "mask ratio") -> float:
    """Accept a masking ratio τ in [0, 1); τ = 1 would drop every spike (the model could not learn)."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
        raise ValueError(f"{where} must be a number in [0, 1), got {ratio!r}")
    if not 0.0 <= float(ratio) < 1.0:
        raise ValueError(f"{where} must be in [0, 1) (τ = 0 keeps every spike), got {ratio!r}")
    return float(ratio)


@dataclass(kw_only=True)
class MaskConfig:
    """Where and how Random Spike Masking is applied.

    ratio: masking ratio τ in [0, 1) for every site in ``sites`` (keep probability 1 - τ).
    sites: the sites masked at ``ratio``; the valid names depend on the model (``model.mask_sites``).
        None: the model's default sites (``model.default_mask_sites``: for Spikformer's SSA attn.q,
        attn.k, attn.scores and mlp.hidden, the Masked Spikformer's); a model stores them resolved.
    site_ratios: per-site τ overriding ``ratio`` (a site named here is masked even if not in ``sites``).
    mode: ``"always"`` masks in training and inference (the papers' RSM); ``"train"`` only in training.
    share_over_time: one mask per sample shared by all T steps instead of a new mask every step.
    seed: seed of the masks' own random generators; None draws from torch's global generator
        (itself seeded from the run config, so runs stay reproducible).
    draw: where random numbers are drawn. ``"all"``: one per element of the masked tensor (per
        step, or per sample with ``share_over_time``), as the papers' RSM. ``"arriving"``: only
        where a spike (a non-zero) arrives — with ``share_over_time``, where one arrives at some
        step. The masked output has the same distribution (a zero stays zero either way), but
        the random stream differs, so the same seed gives other masks than ``"all"``; on a GPU
        it also costs a host sync per mask (the number of draws is data-dependent).
    """

    ratio: float = bounded(0.0, ge=0, lt=1)  # τ = 1 would drop every spike: nothing could be learned
    sites: tuple[str, ...] | None = None
    site_ratios: dict[str, float] = field(default_factory=dict)
    mode: Literal["always", "train"] = "always"
    share_over_time: bool = False
    seed: int | None = bounded(None, ge=0, lt=2**32)
    draw: Literal["all", "arriving"] = "all"

    def __post_init__(self) -> None:
        check_bounds(self, "mask")
        self.ratio = check_ratio(self.ratio, "mask.ratio")
        self.sites = tuple(self.sites) if self.sites is not None else None
        self.site_ratios = {s: check_ratio(r, f"mask.site_ratios[{s!r}]") for s, r in self.site_ratios.items()}
        if self.mode not in ("always", "train"):
            raise ValueError(f"mask.mode must be 'always' or 'train', got {self.mode!r}")
        if self.draw not in DRAW_MODES:
            raise ValueError(f"mask.draw must be 'all' or 'arriving', got {self.draw!r}")

    def ratio_for(self, site: str) -> float:
        if site in self.site_ratios:
            return self.site_ratios[site]
        return self.ratio if site in (self.sites or ()) else 0.0

    def named_sites(self) -> set[str]:
        return set(self.sites or ()) | set(self.site_ratios)

    @property
    def active(self) -> bool:
        defaults = self.sites is None and self.ratio > 0  # masks the model's default sites once applied
        return defaults or any(self.ratio_for(s) > 0 for s in self.named_sites())

    def describe(self) -> str:
        """Short human description, e.g. ``τ=0.5 on attn.q, attn.k (always, per step)``."""
        ratios = {s: self.ratio_for(s) for s in sorted(self.named_sites()) if self.ratio_for(s) > 0}
        if self.sites is None and self.ratio > 0:
            ratios = {"the model's default sites": self.ratio, **ratios}
        if not ratios:
            return "off"
        groups: dict[float, list[str]] = {}
        for s, r in ratios.items():
            groups.setdefault(r, []).append(s)
        parts = [f"τ={r:g} on {', '.join(ss)}" for r, ss in groups.items()]
        timing = "shared over T" if self.share_over_time else "per step"
        draw = ", drawn where spikes arrive" if self.draw == "arriving" else ""
        return f"{'; '.join(parts)} ({self.mode}, {timing}{draw})"


def random_spike_mask(
    x: torch.Tensor,
    ratio: float,
    *,
    share_over_time: bool = False,
    generator: torch.Generator | None = None,
    draw: str = "all",
) -> torch.Tensor:
    """Return ``x * m``, ``m ~ Bernoulli(1 - ratio)`` per element, without rescaling.

    x: ``[T, B, ...]``. With ``share_over_time`` one mask of shape ``[B, ...]`` serves every step.
    ``ratio`` may be anything in [0, 1] here (1 drops everything: used by the energy sanity checks).
    ``draw="arriving"`` draws random numbers only where ``x`` is non-zero (with ``share_over_time``:
    non-zero at some step); elsewhere the mask value is irrelevant, since ``0 * m = 0``. The
    output has the same distribution as with ``"all"``, from a different random stream.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    if draw not in DRAW_MODES:
        raise ValueError(f"draw must be 'all' or 'arriving', got {draw!r}")
    if ratio == 0.0:
        return x
    if draw == "all":
        shape = x.shape[1:] if share_over_time else x.shape
        keep = torch.rand(shape, generator=generator, device=x.device) >= ratio  # P(keep) = 1 - ratio
        return x * keep.to(x.dtype)
    arriving = x != 0
    if share_over_time:
        arriving = arriving.any(dim=0)  # [B, ...]: a spike at some step
    keep = torch.zeros(arriving.shape, dtype=torch.bool, device=x.device)
    draws = torch.rand(int(arriving.sum()), generator=generator, device=x.device)  # one per arriving element
    keep[arriving] = draws >= ratio
    return x * keep.to(x.dtype)


class SpikeMask(nn.Module):
    """RSM at one named site. Identity when its ratio is 0 or when it is inactive in this mode.

    ``feeds`` names the sibling module(s) that consume the masked tensor (the energy counter credits
    the mask to them; empty when the consumer is a neuron rather than a synapse).
    """

    def __init__(self, site: str, feeds: str | tuple[str, ...] | None = None) -> None:
        super().__init__()
        self.site = site
        self.feeds: tuple[str, ...] = (feeds,) if isinstance(feeds, str) else tuple(feeds or ())
        self.ratio = 0.0
        self.mode = "always"
        self.share_over_time = False
        self.draw = "all"
        self._seed: int | None = None
        self._generators: dict[torch.device, torch.Generator] = {}

    def configure(self, cfg: MaskConfig, index: int = 0) -> None:
        """Take this site's settings from ``cfg``; ``index`` decorrelates the generators of sites."""
        self.ratio = cfg.ratio_for(self.site)
        self.mode = cfg.mode
        self.share_over_time = cfg.share_over_time
        self.draw = cfg.draw
        self.reseed(None if cfg.seed is None else cfg.seed * 1_000_003 + index)

    def reseed(self, seed: int | None) -> None:
        """Restart this mask's generator (None: use torch's global generator)."""
        self._seed = seed
        self._generators = {}

    def _generator(self, device: torch.device) -> torch.Generator | None:
        if self._seed is None:
            return None
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self._seed)
        return self._generators[device]

    @property
    def enabled(self) -> bool:
        return self.ratio > 0 and (self.mode == "always" or self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        return random_spike_mask(
            x, self.ratio, share_over_time=self.share_over_time, generator=self._generator(x.device), draw=self.draw
        )

    def extra_repr(self) -> str:
        seed = "" if self._seed is None else ", seeded"
        timing = "shared over T" if self.share_over_time else "per step"
        draw = ", drawn where spikes arrive" if self.draw == "arriving" else ""
        return f"site={self.site!r}, ratio={self.ratio:g}, mode={self.mode}, {timing}{draw}{seed}"


class MaskableMixin:
    """For models whose config has a ``mask: MaskConfig`` field and whose masks are :class:`SpikeMask`.

    Subclasses list their valid sites in ``mask_sites``.
    """

    mask_sites: tuple[str, ...] = ()

    @property
    def default_mask_sites(self) -> tuple[str, ...]:
        """The sites ``MaskConfig(sites=None)`` masks; models override it (here: every site)."""
        return tuple(self.mask_sites)

    def set_mask(self, cfg: MaskConfig) -> None:
        """Validate ``cfg`` against this model's sites and push it into every :class:`SpikeMask`."""
        if cfg.sites is None:
            cfg = dataclasses.replace(cfg, sites=tuple(self.default_mask_sites))
        unknown = sorted(cfg.named_sites() - set(self.mask_sites))
        if unknown:
            raise ValueError(
                f"unknown mask site {unknown[0]!r} for {type(self).__name__}."
                f"{close_matches_hint(unknown[0], self.mask_sites)} Valid sites: {', '.join(self.mask_sites)}"
            )
        self.config.mask = cfg  # the config travels with every checkpoint
        for index, module in enumerate(m for m in self.modules() if isinstance(m, SpikeMask)):
            module.configure(cfg, index)

    def reseed_masks(self, seed: int | None) -> None:
        """Give every mask a fresh deterministic generator (mask seeds for mean ± std evaluations)."""
        self.set_mask(dataclasses.replace(self.config.mask, seed=seed))


def apply_rsm(
    model: nn.Module,
    ratio: float | None = None,
    sites: str | list[str] | tuple[str, ...] | None = None,
    *,
    site_ratios: dict[str, float] | None = None,
    mode: str | None = None,
    share_over_time: bool | None = None,
    seed: int | None = None,
    draw: str | None = None,
) -> nn.Module:
    """Set Random Spike Masking on ``model`` in place and return it.

    Arguments left as None keep the model's current mask settings. Example::

        sm.apply_rsm(model, ratio=0.5, sites=["attn.q", "attn.k"])
    """
    if not isinstance(model, MaskableMixin):
        raise TypeError(f"{type(model).__name__} has no Random Spike Masking sites")
    if isinstance(sites, str):  # one site given as a string, not a list of its characters
        sites = [sites]
    changes = dict(ratio=ratio, sites=None if sites is None else tuple(sites), site_ratios=site_ratios,
                   mode=mode, share_over_time=share_over_time, seed=seed, draw=draw)
    cfg = dataclasses.replace(model.config.mask, **{k: v for k, v in changes.items() if v is not None})
    model.set_mask(cfg)
    return model
