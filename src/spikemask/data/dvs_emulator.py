"""A DVS emulator for static images, the way N-MNIST was recorded from MNIST.

Orchard et al. 2015 (N-MNIST, N-Caltech101) mounted an ATIS on a pan-tilt unit and moved it through
three short saccades forming a triangle (~100 ms each) in front of a monitor showing the image. Here
the image moves instead, along the same kind of path:

* the path visits three corners of a triangle, one saccade per side, starting and ending at the
  first corner; each saccade eases in and out (raised-cosine speed profile), like a pan-tilt motor;
* every ``time_step_us`` the image is rendered at its sub-pixel offset (bilinear interpolation);
* a pixel keeps a reference log intensity; whenever the current log intensity differs from it by at
  least the contrast threshold ``C``, the pixel emits ``floor(|change| / C)`` events of the sign of the
  change (ON = brighter) and its reference moves by that whole multiple of ``C`` (the DVS pixel model of
  Lichtsteiner et al. 2008, as used by ESIM / v2e without their noise models); a change within 1e-3 C
  of a whole multiple counts as that multiple, because a pixel that returns to an earlier intensity lands
  exactly on one and float rounding must not decide whether it fires;
* an event is stamped uniformly at random (seeded, per sample) inside the time step in which it was
  detected, and the stream is sorted by time.

The work is vectorised over pixels and over a batch of images; only the time steps are a loop. All
images of a batch share the path, so batching changes nothing: each sample's random numbers come from
its own seed and are drawn in a fixed per-sample order.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from .events import EVENT_DTYPE

__all__ = ["EmulatorConfig", "saccade_offsets", "emulate_saccades"]

# Bump whenever a code change alters the events emitted for the same config: data sets record it
# in their manifest and are rebuilt instead of silently reused with the old output.
EMULATOR_VERSION = 1

_SLACK = np.float32(1e-3)  # in units of C; far above float32 rounding of log intensities (~1e-6)


@dataclasses.dataclass(frozen=True, kw_only=True)
class EmulatorConfig:
    """Settings of :func:`emulate_saccades`; the defaults make N-Digits."""

    threshold: float = 0.25
    """Contrast threshold ``C`` in natural-log intensity units (real DVS pixels: ~0.1 to 0.5)."""
    saccade_amplitude: float = 3.0
    """Size of the triangle in pixels: width ``A`` and height ``A`` (corners ``(0, -A/2), (A/2, A/2), (-A/2, A/2)``)."""
    saccade_duration_us: int = 100_000
    """Duration of one saccade in microseconds; the recording lasts three of them."""
    time_step_us: int = 1_000
    """Time grid of the rendering in microseconds; events are jittered uniformly inside a step."""
    background: float = 0.1
    """Intensity of a black pixel relative to white (a monitor's black level); > 0 keeps the log finite."""
    noise_rate_hz: float = 0.0
    """Background-activity noise per pixel, events per second (random pixel, time and polarity); 0 = off."""

    def __post_init__(self) -> None:
        if not self.threshold > 0:
            raise ValueError(f"threshold must be > 0, got {self.threshold}")
        if not self.saccade_amplitude >= 0:
            raise ValueError(f"saccade_amplitude must be >= 0 pixels, got {self.saccade_amplitude}")
        if self.time_step_us < 1 or self.saccade_duration_us < self.time_step_us:
            raise ValueError(
                f"need 1 <= time_step_us <= saccade_duration_us, got {self.time_step_us} and {self.saccade_duration_us}"
            )
        if self.saccade_duration_us % self.time_step_us:
            raise ValueError("saccade_duration_us must be a whole number of time steps")
        if not 0 < self.background < 1:
            raise ValueError(f"background must lie in (0, 1), got {self.background}")
        if not self.noise_rate_hz >= 0:
            raise ValueError(f"noise_rate_hz must be >= 0, got {self.noise_rate_hz}")

    @property
    def duration_us(self) -> int:
        """Length of the whole recording (three saccades), microseconds."""
        return 3 * self.saccade_duration_us

    @property
    def num_steps(self) -> int:
        return self.duration_us // self.time_step_us


def saccade_offsets(config: EmulatorConfig) -> tuple[np.ndarray, np.ndarray]:
    """Image offsets ``(dx, dy)`` in pixels at steps ``0..S`` (``float64 [S+1]`` each, S = ``num_steps``)."""
    a = config.saccade_amplitude
    corners = np.array([[0.0, -a / 2], [a / 2, a / 2], [-a / 2, a / 2], [0.0, -a / 2]])  # closed triangle
    steps_per = config.saccade_duration_us // config.time_step_us
    phase = np.arange(config.num_steps + 1) / steps_per  # in saccades
    seg = np.minimum(phase.astype(np.int64), 2)
    ease = 0.5 - 0.5 * np.cos(np.pi * (phase - seg))  # 0 -> 1 with zero speed at both ends
    pos = corners[seg] + ease[:, None] * (corners[seg + 1] - corners[seg])
    return pos[:, 0], pos[:, 1]


def _render(padded: np.ndarray, margin: int, dx: float, dy: float, h: int, w: int) -> np.ndarray:
    """Image shifted by ``(dx, dy)`` pixels, bilinear: ``out[y, x] = img(y - dy, x - dx)``; ``[B, h, w]``."""
    ix, iy = math.floor(dx), math.floor(dy)
    fx, fy = np.float32(dx - ix), np.float32(dy - iy)
    x0, y0 = margin - ix, margin - iy
    cols = padded[:, :, x0 - 1 : x0 + w]  # [B, h + 2m, w + 1]
    rows = (1 - fy) * cols[:, y0 : y0 + h] + fy * cols[:, y0 - 1 : y0 - 1 + h]  # [B, h, w + 1]
    return (1 - fx) * rows[:, :, 1:] + fx * rows[:, :, :-1]


def emulate_saccades(
    images: np.ndarray,
    config: EmulatorConfig,
    seeds: Sequence[int | np.random.SeedSequence],
) -> list[np.ndarray]:
    """Turn static images into event streams.

    ``images``: ``[B, H, W]`` floats in ``[0, 1]`` (0 = black). ``seeds``: one seed per image (drives the
    timestamp jitter and the noise). Returns ``B`` arrays of :data:`EVENT_DTYPE` ``[N_b]``, sorted by time,
    with ``0 <= t < config.duration_us`` and coordinates inside ``H x W``. Cost grows with ``B * H * W``
    per time step; callers chunk large sets (a few hundred images per call keeps the arrays in cache).
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3:
        raise ValueError(f"images must be [B, H, W], got shape {images.shape}")
    if len(seeds) != images.shape[0]:
        raise ValueError(f"need one seed per image: {len(seeds)} seeds for {images.shape[0]} images")
    b, h, w = images.shape
    dxs, dys = saccade_offsets(config)
    margin = int(math.ceil(max(np.abs(dxs).max(), np.abs(dys).max()))) + 2
    bg = np.float32(config.background)
    intensity = bg + (1 - bg) * np.clip(images, 0, 1)
    padded = np.pad(intensity, ((0, 0), (margin, margin), (margin, margin)), constant_values=bg)
    inv_c = np.float32(1.0 / config.threshold)
    step_c = np.float32(config.threshold)

    ref = np.log(_render(padded, margin, dxs[0], dys[0], h, w)).reshape(-1)  # the pixels adapt to the start
    where, count, when = [], [], []
    for k in range(1, config.num_steps + 1):
        log_i = np.log(_render(padded, margin, dxs[k], dys[k], h, w)).reshape(-1)
        ratio = (log_i - ref) * inv_c
        # signed number of whole thresholds crossed; a pixel returning to an earlier intensity lands on a
        # whole multiple of C exactly, so the slack makes that count (not float rounding noise) decide
        n = np.trunc(ratio + np.copysign(_SLACK, ratio))
        idx = np.flatnonzero(n != 0)  # nonzero() on a bool mask is several times faster than on floats
        if idx.size:
            nk = n[idx]
            ref[idx] += nk * step_c  # the reference moves by whole multiples of C
            where.append(idx)
            count.append(nk.astype(np.int64))
            when.append(np.full(idx.size, k, dtype=np.int64))
    return _split_by_sample(where, count, when, b, h, w, config, seeds)


def _split_by_sample(where, count, when, b, h, w, config, seeds) -> list[np.ndarray]:
    """Expand multi-threshold crossings, split the flat batch into samples, stamp, add noise, sort."""
    if where:
        where_a, count_a, when_a = np.concatenate(where), np.concatenate(count), np.concatenate(when)
    else:
        where_a = count_a = when_a = np.zeros(0, dtype=np.int64)
    reps = np.abs(count_a)
    flat = np.repeat(where_a, reps)
    pol = np.repeat(count_a > 0, reps).astype(np.uint8)
    step = np.repeat(when_a, reps)
    sample = flat // (h * w)
    # stable: within a sample the order stays (step, pixel, repeat), whatever the batch was
    order = np.argsort(sample, kind="stable")
    bounds = np.searchsorted(sample[order], np.arange(b + 1))
    dt = config.time_step_us
    noise_mean = config.noise_rate_hz * h * w * config.duration_us * 1e-6
    streams = []
    for i in range(b):
        sel = order[bounds[i] : bounds[i + 1]]
        rng = np.random.default_rng(seeds[i])
        pix = flat[sel] % (h * w)
        t = ((step[sel] - 1) * dt + np.floor(rng.random(sel.size) * dt)).astype(np.int64)
        x, y, p = pix % w, pix // w, pol[sel]
        if noise_mean > 0:
            n_noise = int(rng.poisson(noise_mean))
            t = np.concatenate([t, rng.integers(0, config.duration_us, n_noise)])
            x = np.concatenate([x, rng.integers(0, w, n_noise)])
            y = np.concatenate([y, rng.integers(0, h, n_noise)])
            p = np.concatenate([p, rng.integers(0, 2, n_noise).astype(np.uint8)])
        by_time = np.argsort(t, kind="stable")
        ev = np.empty(t.size, dtype=EVENT_DTYPE)
        ev["t"], ev["x"], ev["y"], ev["p"] = t[by_time], x[by_time], y[by_time], p[by_time]
        streams.append(ev)
    return streams
