"""How an event sample is presented to a model: a clip of frames, or MST's stacked "voxel grid" image.

``representation="frames"`` (default): ``float32 [T, 2, H, W]``, SpikingJelly's event-count frames.

``representation="voxel"`` (MST, Wang et al. ICCV 2023, 001_9e47b243e487ffe3.txt sec. 4.2: "the frames are
integrated into an input tensor of size (n x C, H, W)"): the same SpikingJelly frames with ``T = bins``
(per-bin, per-polarity event counts, not normalised), stacked as channels bin by bin,
``[bins, 2, H, W] -> [2 * bins, H, W]`` (channel ``2 i + p``: bin ``i``, polarity ``p``, OFF first). The sample
is then a static image: the model repeats it over its own T, as for image sets. With ``data.size`` the image is
zero-padded to a square (centred; an odd remainder goes to the bottom / right) and resized to ``size``
bilinearly (antialiased), the way MST's description feeds 128 x 128 CIFAR10-DVS grids to a 224 x 224 Swin-T.

The authors' public code has no event loader (its ``data/build.py`` builds ImageNet, CIFAR-10 and CIFAR-100
only), so the binning is the paper's "frame-based representation" computed with SpikingJelly, which the paper
names as its framework; the padding and resizing follow the project's spec (``shared/spec/mst.md``).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["REPRESENTATIONS", "DEFAULT_BINS", "check_representation", "voxel_image", "pad_to_square",
           "representation_of"]

REPRESENTATIONS = ("frames", "voxel")
DEFAULT_BINS = 9  # MST's CIFAR10-DVS grids: 9 bins x 2 polarities = 18 channels


def check_representation(name: str, representation: object, bins: object) -> tuple[str, int]:
    """``(representation, bins)`` checked; ``ValueError`` naming the option and the valid values otherwise."""
    if representation not in REPRESENTATIONS:
        raise ValueError(f"{name}: data.options.representation must be one of {', '.join(REPRESENTATIONS)}, "
                         f"got {representation!r}")
    if not isinstance(bins, (int, np.integer)) or isinstance(bins, bool) or bins < 1:
        raise ValueError(f"{name}: data.options.bins must be a positive integer, got {bins!r}")
    return str(representation), int(bins)


def representation_of(name: str, options: Mapping[str, Any] | None) -> tuple[str, int]:
    """The ``(representation, bins)`` that data-set ``options`` (``data.options``) ask for, checked."""
    options = options or {}
    return check_representation(name, options.get("representation", "frames"), options.get("bins", DEFAULT_BINS))


def pad_to_square(x: torch.Tensor) -> torch.Tensor:
    """Zero-pad ``[..., H, W]`` to ``[..., S, S]``, ``S = max(H, W)``, centred (odd remainder bottom / right)."""
    h, w = x.shape[-2:]
    s = max(h, w)
    if h == w:
        return x
    top, left = (s - h) // 2, (s - w) // 2
    return F.pad(x, (left, s - w - left, top, s - h - top))


def voxel_image(frames: np.ndarray, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Event-count frames ``[bins, 2, H, W]`` (any dtype) -> ``float32 [2 * bins, h, w]``.

    ``size`` None: ``(h, w) = (H, W)``, counts untouched. Otherwise pad to a square, then resize to ``size``
    (bilinear, antialiased, half-pixel centres); a square sensor at its own size is left untouched.
    """
    bins, pols, h, w = frames.shape
    x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).reshape(bins * pols, h, w)  # [2 bins, H, W]
    if size is None or (h == w and tuple(size) == (h, w)):
        return x
    x = pad_to_square(x)
    return F.interpolate(x[None], size=tuple(size), mode="bilinear", align_corners=False, antialias=True)[0]
