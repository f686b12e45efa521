"""What a Random Spike Mask draws, and where: the mask functions behind :class:`spikemask.masking.SpikeMask`.

:func:`random_spike_mask` drops elements (the papers' RSM) or whole structured units (tokens, heads,
channels; :data:`LAYOUTS`), with one random number per element or unit (``draw="all"``) or only where a
spike arrives (``"arriving"``), per step or shared over T; :func:`mask_draws` counts those numbers.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from . import engine

__all__ = ["DRAW_MODES", "STRUCTURES", "LAYOUTS", "random_spike_mask", "structure_error", "mask_draws"]

DRAW_MODES = ("all", "arriving")
STRUCTURES = ("element", "token", "head", "channel")
# what each structure drops, by the layout of the site's tensor (x is [T, B, ...]; the unit spans the other dims)
LAYOUTS = {
    "tokens": ("[T, B, N, D]", {"token": "a token (all D features)", "channel": "a feature (all N tokens)",
                                "head": "a head (its D / H features, all N tokens)"}),
    "scores": ("[T, B, H, N, N]", {"token": "a query token (its row, every head)",
                                   "head": "a head (its N x N scores)"}),
}


def random_spike_mask(
    x: torch.Tensor,
    ratio: float,
    *,
    share_over_time: bool = False,
    generator: torch.Generator | None = None,
    draw: str = "all",
    structure: str = "element",
    layout: str | None = None,
    heads: int | None = None,
) -> torch.Tensor:
    """Return ``x * m``, ``m ~ Bernoulli(1 - ratio)`` per element, without rescaling.

    x: ``[T, B, ...]``. With ``share_over_time`` one mask of shape ``[B, ...]`` serves every step.
    ``ratio`` may be anything in [0, 1] here (1 drops everything: used by the energy sanity checks).
    ``draw="arriving"`` draws random numbers only where ``x`` is non-zero (with ``share_over_time``:
    non-zero at some step); elsewhere the mask value is irrelevant, since ``0 * m = 0``. The
    output has the same distribution as with ``"all"``, from a different random stream.
    ``structure`` other than ``"element"``: one decision per unit of ``x`` (a token, head or channel of
    ``layout``, see :data:`LAYOUTS`; ``heads`` splits D for ``"head"`` on ``"tokens"``), broadcast over
    the unit's elements; ``"arriving"`` then draws one number per unit that holds a non-zero.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    if draw not in DRAW_MODES:
        raise ValueError(f"draw must be 'all' or 'arriving', got {draw!r}")
    if ratio == 0.0:
        return x
    if structure != "element":
        return _structured_mask(x, ratio, share_over_time, generator, draw, structure, layout, heads)
    if draw == "all":
        shape = x.shape[1:] if share_over_time else x.shape
        # P(keep) = 1 - ratio; the comparison in place (1.0 / 0.0): no bool temporary and no cast pass
        keep = torch.rand(shape, generator=generator, device=x.device).ge_(ratio)
        return x * keep.to(x.dtype)
    numpy_ok = x.device.type == "cpu" and not x.requires_grad and x.dtype in (torch.float32, torch.float64,
                                                                                torch.float16)
    if numpy_ok and not share_over_time:
        return _drop_arriving(x, ratio, generator)
    arriving = x != 0
    if share_over_time:
        arriving = arriving.any(dim=0)  # [B, ...]: a spike at some step
    if numpy_ok:
        return _drop_arriving_shared(x, arriving, ratio, generator)
    keep = torch.zeros(arriving.shape, dtype=torch.bool, device=x.device)
    draws = torch.rand(int(arriving.sum()), generator=generator, device=x.device)  # one per arriving element
    keep[arriving] = draws >= ratio
    return x * keep.to(x.dtype)


# The CPU forms of draw="arriving" below draw the same numbers in the same (row-major) order as the boolean
# indexing above, so they give the same masks; they find the positions with NumPy and zero the dropped spikes
# in a copy instead of a full multiply (2-3x faster).
def _drop_arriving(x: torch.Tensor, ratio: float, generator: torch.Generator | None) -> torch.Tensor:
    """One draw per spike of ``x``, at positions the event engine already holds (a neuron wrote them) or found
    here; the kept positions are the output's event list, handed on to the layer the mask feeds."""
    known = engine.known_positions(x)
    flat = known if known is not None else np.flatnonzero((x != 0).numpy())  # [arriving], row-major
    keep = (torch.rand(len(flat), generator=generator) >= ratio).numpy()
    out = x.clone(memory_format=torch.contiguous_format)
    out.numpy().reshape(-1)[flat[~keep]] = 0
    if known is not None or bool((x.reshape(-1)[torch.from_numpy(flat)] == 1).all()):  # binary: a plain list
        engine.remember_events(out, flat[keep])
    return out


def _drop_arriving_shared(x: torch.Tensor, arriving: torch.Tensor, ratio: float,
                          generator: torch.Generator | None) -> torch.Tensor:
    """One draw per position that fires at some step (``arriving [B, ...]``); the mask serves every step."""
    dropped = np.flatnonzero(arriving.numpy())
    dropped = dropped[(torch.rand(len(dropped), generator=generator) < ratio).numpy()]
    keep = torch.ones(arriving.shape, dtype=x.dtype)
    keep.numpy().reshape(-1)[dropped] = 0
    return x * keep


def structure_error(site: str, structure: str, layout: str | None, heads: int | None) -> str | None:
    """Why ``structure`` cannot mask ``site`` (its tensor's ``layout``; ``heads`` for ``"tokens"``), or None."""
    if structure == "element":
        return None
    if layout not in LAYOUTS:
        return f"the layout of site {site!r} is not known to structured masking (only structure 'element' applies)"
    shape, units = LAYOUTS[layout]
    if structure == "head" and layout == "tokens" and not heads:
        units = {k: v for k, v in units.items() if k != "head"}
        why = "its features are not split into attention heads"
    else:
        why = f"its tensor is {shape}"
    if structure not in units:
        valid = ", ".join(("element", *units))
        return f"structure {structure!r} does not apply to site {site!r}: {why}; valid there: {valid}"
    return None


def _units(shape: torch.Size, structure: str, layout: str | None, heads: int | None,
           site: str = "this site") -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(view, unit): ``x`` reshaped to ``view``; a mask of shape ``unit`` (1 on the dims a unit spans) broadcasts."""
    problem = structure_error(site, structure, layout, heads)
    if problem:
        raise ValueError(problem)
    rank = 4 if layout == "tokens" else 5
    if len(shape) != rank:
        raise ValueError(f"{structure} masking at {site} expects {LAYOUTS[layout][0]}, got shape {tuple(shape)}")
    T, B = shape[:2]
    if layout == "tokens":  # [T, B, N, D]
        N, D = shape[2:]
        if structure == "head":
            if D % heads:
                raise ValueError(f"head masking at {site}: D = {D} is not divisible by {heads} heads")
            return (T, B, N, heads, D // heads), (T, B, 1, heads, 1)  # [T, B, N, H, d]
        return tuple(shape), ((T, B, N, 1) if structure == "token" else (T, B, 1, D))
    H, N = shape[2], shape[3]  # [T, B, H, N, N]
    return tuple(shape), ((T, B, 1, N, 1) if structure == "token" else (T, B, H, 1, 1))


def _arriving_units(x: torch.Tensor, unit: tuple[int, ...]) -> torch.Tensor:
    """Bool ``unit``-shaped: the units holding a non-zero of ``x`` (``x`` viewed to broadcast against ``unit``)."""
    arriving = x != 0
    for dim in (d for d, n in enumerate(unit) if n == 1 and x.shape[d] != 1):
        arriving = arriving.any(dim=dim, keepdim=True)
    return arriving


def _structured_mask(x, ratio, share_over_time, generator, draw, structure, layout, heads) -> torch.Tensor:
    view, unit = _units(x.shape, structure, layout, heads)
    if share_over_time:
        unit = (1, *unit[1:])  # one decision per sample, every step
    xv = x.reshape(view)
    if draw == "all":
        keep = torch.rand(unit, generator=generator, device=x.device) >= ratio  # one number per unit
    else:
        arriving = _arriving_units(xv, unit)
        keep = torch.zeros(unit, dtype=torch.bool, device=x.device)
        keep[arriving] = torch.rand(int(arriving.sum()), generator=generator, device=x.device) >= ratio
    return (xv * keep.to(x.dtype)).view(x.shape)


def mask_draws(x: torch.Tensor, *, share_over_time: bool, draw: str, structure: str = "element",
               layout: str | None = None, heads: int | None = None, every_arrives: bool = False) -> int:
    """Random numbers :func:`random_spike_mask` draws on ``x`` (``every_arrives``: as if every element fired)."""
    if structure == "element":
        view, unit = tuple(x.shape), tuple(x.shape)
    else:
        view, unit = _units(x.shape, structure, layout, heads)
    if share_over_time:
        unit = (1, *unit[1:])
    if draw == "all" or every_arrives:
        return math.prod(unit)
    return int(_arriving_units(x.reshape(view), unit).sum())
