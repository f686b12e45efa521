"""Random Spike Masking (RSM): drop spikes at random, in training *and* inference.

RSM (MST, 001_9e47b243e487ffe3.txt; Masked Spikformer, 000_766e5557120f520b.txt) multiplies a
spike tensor by a Bernoulli mask with keep probability ``1 - τ``. Unlike dropout there is **no
rescaling** by ``1 / (1 - τ)``, and it stays on at inference: the point is that the masked spikes
are never sent, so the synaptic operations they would have caused are never paid for.

A mask lives at a named *site* of a model (``attn.q``, ``attn.k``, ``attn.scores``,
``mlp.hidden``, ...). Everything about it is in :class:`MaskConfig`, which is a field of every
model config and therefore travels inside every checkpoint. The mask functions themselves (what is drawn,
where, per element or per unit) are in :mod:`spikemask.mask_draw`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from .config import bounded, check_bounds, close_matches_hint
from .mask_draw import DRAW_MODES, LAYOUTS, STRUCTURES, mask_draws, random_spike_mask, structure_error

__all__ = ["MaskConfig", "SpikeMask", "random_spike_mask", "apply_rsm", "MaskableMixin", "check_ratio", "DRAW_MODES",
           "STRUCTURES", "structure_error", "mask_draws"]


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
    blocks: the blocks (their indices in the model's order, ``model.mask_blocks()``) whose masks are on;
        None: every block. MST's Fig. 6 masks the first k blocks: ``blocks: [0, 1, ..., k-1]``.
    block_ratios: per-block τ for the sites in ``sites`` (``{block index: τ}``), overriding ``ratio``;
        ``site_ratios`` still win.
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
    structure: the unit one keep/drop decision covers. ``"element"``: every element on its own (the
        papers' RSM). ``"token"``: whole tokens (a ``[T, B, N, D]`` site: all D features of a token;
        ``attn.scores`` ``[T, B, H, N, N]``: a query token's row in every head). ``"head"``: whole
        attention heads (``attn.scores``; SSA's ``attn.q`` / ``attn.k`` / ``attn.v``, their D split into
        the model's heads). ``"channel"``: whole features of a ``[T, B, N, D]`` site (all tokens). A unit
        is drawn per sample and step (per sample with ``share_over_time``): τ is the fraction of units
        dropped, and one random number is drawn per unit (``"arriving"``: per unit a spike arrives in).
        A site where the structure does not apply is refused when the model takes the config.
    """

    ratio: float = bounded(0.0, ge=0, lt=1)  # τ = 1 would drop every spike: nothing could be learned
    sites: tuple[str, ...] | None = None
    site_ratios: dict[str, float] = field(default_factory=dict)
    blocks: tuple[int, ...] | None = bounded(None, ge=0)
    block_ratios: dict[int, float] = field(default_factory=dict)
    mode: Literal["always", "train"] = "always"
    share_over_time: bool = False
    seed: int | None = bounded(None, ge=0, lt=2**32)
    draw: Literal["all", "arriving"] = "all"
    structure: Literal["element", "token", "head", "channel"] = "element"

    def __post_init__(self) -> None:
        check_bounds(self, "mask")
        self.ratio = check_ratio(self.ratio, "mask.ratio")
        self.sites = tuple(self.sites) if self.sites is not None else None
        self.site_ratios = {s: check_ratio(r, f"mask.site_ratios[{s!r}]") for s, r in self.site_ratios.items()}
        self.block_ratios = {int(b): check_ratio(r, f"mask.block_ratios[{b}]") for b, r in self.block_ratios.items()}
        self.blocks = tuple(int(b) for b in self.blocks) if self.blocks is not None else None
        bad = [b for b in (*(self.blocks or ()), *self.block_ratios) if b < 0]
        if bad:
            raise ValueError(f"mask.blocks / mask.block_ratios: block indices are >= 0, got {bad[0]}")
        if self.mode not in ("always", "train"):
            raise ValueError(f"mask.mode must be 'always' or 'train', got {self.mode!r}")
        if self.draw not in DRAW_MODES:
            raise ValueError(f"mask.draw must be 'all' or 'arriving', got {self.draw!r}")
        if self.structure not in STRUCTURES:
            raise ValueError(f"mask.structure must be one of {', '.join(STRUCTURES)}, got {self.structure!r}."
                             f"{close_matches_hint(str(self.structure), STRUCTURES)}")

    def ratio_for(self, site: str, block: int | None = None) -> float:
        """τ at ``site`` in block ``block`` (None: a site outside any block, or the block is not known)."""
        if block is not None and self.blocks is not None and block not in self.blocks:
            return 0.0
        if site in self.site_ratios:
            return self.site_ratios[site]
        if site not in (self.sites or ()):
            return 0.0
        return self.block_ratios.get(block, self.ratio) if block is not None else self.ratio

    def named_sites(self) -> set[str]:
        return set(self.sites or ()) | set(self.site_ratios)

    @property
    def active(self) -> bool:
        defaults = self.sites is None and (self.ratio > 0 or any(r > 0 for r in self.block_ratios.values()))
        by_block = any(r > 0 for r in self.block_ratios.values()) and bool(self.sites)
        return defaults or by_block or any(self.ratio_for(s) > 0 for s in self.named_sites())

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
        if self.block_ratios:
            parts.append("per block " + ", ".join(f"{b}: τ={r:g}" for b, r in sorted(self.block_ratios.items())))
        if self.blocks is not None:
            parts.append(f"blocks {', '.join(map(str, self.blocks))} only")
        timing = "shared over T" if self.share_over_time else "per step"
        draw = ", drawn where spikes arrive" if self.draw == "arriving" else ""
        unit = "" if self.structure == "element" else f", whole {self.structure}s"
        return f"{'; '.join(parts)} ({self.mode}, {timing}{draw}{unit})"


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
        self.structure = "element"
        self.layout: str | None = None  # the layout of this site's tensor (LAYOUTS), set by the model
        self.heads: int | None = None  # attention heads its features split into, if any
        self.block: int | None = None
        self._seed: int | None = None
        self._generators: dict[torch.device, torch.Generator] = {}

    def configure(self, cfg: MaskConfig, index: int = 0, block: int | None = None, *,
                  layout: str | None = None, heads: int | None = None) -> None:
        """Take this site's settings from ``cfg`` (``block``: the index of the block this mask sits in);
        ``index`` decorrelates the generators of sites; ``layout`` / ``heads``: this site's tensor, for
        structured masks (refused here when ``cfg.structure`` does not apply to a masked site)."""
        ratio = cfg.ratio_for(self.site, block)
        problem = structure_error(self.site, cfg.structure, layout, heads) if ratio > 0 else None
        if problem:
            raise ValueError(f"mask.structure: {problem}")
        # an unmasked site stays "element" (its repr and report then say nothing of a structure it never uses)
        self.layout, self.heads, self.structure = layout, heads, cfg.structure if ratio > 0 else "element"
        self.block = block
        self.ratio = cfg.ratio_for(self.site, block)
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
        if self.structure != "element" and x.dim() != (4 if self.layout == "tokens" else 5):
            raise ValueError(f"{self.structure} masking at {self.site} expects {LAYOUTS[self.layout][0]}, "
                             f"got shape {tuple(x.shape)}")
        return random_spike_mask(
            x, self.ratio, share_over_time=self.share_over_time, generator=self._generator(x.device), draw=self.draw,
            structure=self.structure, layout=self.layout, heads=self.heads,
        )

    def draws(self, x: torch.Tensor, every_arrives: bool = False) -> int:
        """Random numbers :meth:`forward` draws on ``x`` (one per element or unit; 0 when disabled)."""
        if not self.enabled:
            return 0
        return mask_draws(x, share_over_time=self.share_over_time, draw=self.draw, structure=self.structure,
                          layout=self.layout, heads=self.heads, every_arrives=every_arrives)

    def extra_repr(self) -> str:
        seed = "" if self._seed is None else ", seeded"
        timing = "shared over T" if self.share_over_time else "per step"
        draw = ", drawn where spikes arrive" if self.draw == "arriving" else ""
        unit = "" if self.structure == "element" else f", whole {self.structure}s"
        return f"site={self.site!r}, ratio={self.ratio:g}, mode={self.mode}, {timing}{draw}{unit}{seed}"


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
        blocks = self.mask_blocks()
        out_of_range = [b for b in (*(cfg.blocks or ()), *cfg.block_ratios) if b >= len(blocks)]
        if out_of_range:
            raise ValueError(f"mask block {out_of_range[0]} does not exist: {type(self).__name__} has "
                             f"{len(blocks)} blocks (0..{len(blocks) - 1})")
        masks = [(name, module, next((i for i, p in enumerate(blocks) if name.startswith(p + ".")), None))
                 for name, module in self.named_modules() if isinstance(module, SpikeMask)]
        for _, module, block in masks:  # refuse before any mask changes
            problem = (structure_error(module.site, cfg.structure, *self.mask_layout(module.site))
                       if cfg.ratio_for(module.site, block) > 0 else None)
            if problem:
                raise ValueError(f"mask.structure for {type(self).__name__}: {problem}")
        self.config.mask = cfg  # the config travels with every checkpoint
        # generator indices go to the masks in blocks first: masks outside them (a tokenizer's, added later)
        # leave the seeded streams of the block masks as they were
        masks.sort(key=lambda item: item[2] is None)
        for index, (_, module, block) in enumerate(masks):
            layout, heads = self.mask_layout(module.site)
            module.configure(cfg, index, block, layout=layout, heads=heads)

    def mask_layout(self, site: str) -> tuple[str | None, int | None]:
        """(layout, heads) of the tensor at ``site`` for structured masks (:data:`LAYOUTS`); ``(None, None)``:
        unknown, element masks only. Models whose sites have a known layout override it to opt in."""
        return None, None

    def mask_blocks(self) -> list[str]:
        """The model's blocks, in order (the index of each is its block number for ``mask.blocks``):
        by default every module named ``...blocks.<i>``; models with other block names override this."""
        return [n for n, _ in self.named_modules() if re.search(r"(^|\.)blocks\.\d+$", n)]

    def reseed_masks(self, seed: int | None) -> None:
        """Give every mask a fresh deterministic generator (mask seeds for mean ± std evaluations)."""
        self.set_mask(dataclasses.replace(self.config.mask, seed=seed))


def apply_rsm(
    model: nn.Module,
    ratio: float | None = None,
    sites: str | list[str] | tuple[str, ...] | None = None,
    *,
    site_ratios: dict[str, float] | None = None,
    blocks: list[int] | tuple[int, ...] | None = None,
    block_ratios: dict[int, float] | None = None,
    mode: str | None = None,
    share_over_time: bool | None = None,
    seed: int | None = None,
    draw: str | None = None,
    structure: str | None = None,
) -> nn.Module:
    """Set Random Spike Masking on ``model`` in place and return it.

    Arguments left as None keep the model's current mask settings. Example::

        sm.apply_rsm(model, ratio=0.5, sites=["attn.q", "attn.k"])
        sm.apply_rsm(model, ratio=0.5, sites=["mlp.hidden"], structure="token")  # whole tokens

    Any other ``nn.Module`` (a model you bring) is masked at the output of the modules ``sites`` names:
    module paths or shell patterns (``"layer*.*.act2"``), each matched module's output spikes masked by a
    :class:`SpikeMask` whose site is the module's path (so ``site_ratios`` can single one out).
    """
    if isinstance(sites, str):  # one site given as a string, not a list of its characters
        sites = [sites]
    if not isinstance(model, MaskableMixin):
        if structure not in (None, "element"):
            raise ValueError(f"structure={structure!r} needs a spikemask model (it knows the layout of its sites); "
                             f"{type(model).__name__}'s module outputs are masked per element")
        return _mask_outputs(model, ratio, sites, site_ratios=site_ratios, mode=mode, seed=seed, draw=draw)
    changes = dict(ratio=ratio, sites=None if sites is None else tuple(sites), site_ratios=site_ratios,
                   blocks=None if blocks is None else tuple(blocks), block_ratios=block_ratios,
                   mode=mode, share_over_time=share_over_time, seed=seed, draw=draw, structure=structure)
    cfg = dataclasses.replace(model.config.mask, **{k: v for k, v in changes.items() if v is not None})
    model.set_mask(cfg)
    return model


_ATTACHED = "_spikemask_masks"  # a model you bring: its masks, and the hooks that apply them


def _mask_outputs(model: nn.Module, ratio, sites, *, site_ratios, mode, seed, draw) -> nn.Module:
    """RSM on the outputs of named modules of an arbitrary model (forward hooks; no module is replaced)."""
    import fnmatch

    state = getattr(model, _ATTACHED, None)
    previous = state["config"] if state else None
    if sites is None:
        if previous is None:
            raise TypeError(f"{type(model).__name__} names no Random Spike Masking sites: give sites=[module paths "
                            "or patterns] whose outputs are spikes, e.g. sites=['layer1.*.act']")
        sites = list(previous.sites)
    names = [n for n, _ in model.named_modules() if n and not n.startswith("spikemask_masks")]
    matched = list(dict.fromkeys(n for pattern in sites for n in names if fnmatch.fnmatchcase(n, pattern)))
    unmatched = [p for p in sites if not any(fnmatch.fnmatchcase(n, p) for n in names)]
    if unmatched:
        hint = close_matches_hint(unmatched[0], names)
        raise ValueError(f"no module of {type(model).__name__} matches {unmatched[0]!r}.{hint} "
                         f"Modules: {', '.join(names[:12])}{' ...' if len(names) > 12 else ''}")
    base = previous or MaskConfig()
    changes = dict(ratio=ratio, site_ratios=site_ratios, mode=mode, seed=seed, draw=draw)
    cfg = dataclasses.replace(base, sites=tuple(matched), **{k: v for k, v in changes.items() if v is not None})
    if state:  # re-applying: drop the old hooks first
        for handle in state["handles"]:
            handle.remove()
    masks, handles = {}, []
    for index, name in enumerate(matched):
        mask = SpikeMask(name)
        mask.configure(cfg, index)
        masks[name] = mask
        handles.append(model.get_submodule(name).register_forward_hook(lambda _m, _a, out, mask=mask: mask(out)))
    object.__setattr__(model, _ATTACHED, {"config": cfg, "masks": masks, "handles": handles})
    model._modules["spikemask_masks"] = nn.ModuleList(masks.values())  # seen by named_modules(): the counter
    return model
