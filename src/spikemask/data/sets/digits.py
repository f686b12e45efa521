"""``digits``: the bundled static images — N-Digits' source images, before the DVS emulator.

scikit-learn's 1797 real 8x8 handwritten digits (CC BY 4.0), upsampled to 24x24 and centred on 32x32 in
[0, 1] (:func:`~spikemask.data.ndigits.load_digit_images`), with N-Digits' seeded stratified split
(:func:`~spikemask.data.ndigits.ndigits_split`, 1438 train / 359 test). Nothing is written to disk: the
images are computed in memory (about a second, once per process). Items are in N-Digits' order (by class,
then by position in ``load_digits()``), so ``digits[i]`` is the image that N-Digits' sample ``i`` recorded.
Use it to train an ANN and convert it to an SNN offline (the ``digits`` augmentation: ±2 px shifts, no flip).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..event_dataset import check_size
from ..ndigits import DEFAULT_SEED, SENSOR_SIZE, load_digit_images, ndigits_split

__all__ = ["Digits"]

SPLITS = ("train", "test")


@functools.lru_cache(maxsize=1)
def _images() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(images float32 [N, 32, 32], labels int64 [N], is_test bool [N])``, computed once per process."""
    images, labels = load_digit_images()
    for a in (images, labels):
        a.setflags(write=False)  # shared by every instance: nobody may change them
    is_test = ndigits_split(labels, DEFAULT_SEED)
    is_test.setflags(write=False)
    return images, labels, is_test


class Digits(Dataset):
    """``ds[i] -> (float32 [1, H, W] in [0, 1], int label)``; ``(H, W)`` = ``size`` (default 32 x 32).

    ``size``: resize each image when it is read (bilinear, antialiased, as the CIFAR sets). ``indices``:
    the positions in ``load_digits()`` of this split's samples, in item order. Other keyword arguments of the
    registry's interface (``root``, ``T``, ``split_by``, ``binarize``, ...) do not apply and are ignored.
    """

    def __init__(self, root: object = None, split: str = "train", *, size: tuple[int, int] | None = None,
                 representation: str = "frames", **_: object) -> None:
        if split not in SPLITS:
            raise ValueError(f"digits: split must be one of {', '.join(SPLITS)}, got {split!r}")
        if representation != "frames":
            raise ValueError(f"digits: data.options.representation={representation!r} applies to event sets only; "
                             "digits are static images")
        self.split = split
        self.size = check_size("digits", size) or SENSOR_SIZE
        images, labels, is_test = _images()
        chosen = np.flatnonzero(is_test if split == "test" else ~is_test)
        self.indices = chosen[np.lexsort((chosen, labels[chosen]))]  # by class, then position: N-Digits' order
        self.images = images[self.indices]  # [N, 32, 32]
        self.labels = labels[self.indices]  # [N]

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(self.images[i].copy())[None]  # [1, 32, 32]
        if self.size != SENSOR_SIZE:
            x = F.interpolate(x[None], size=self.size, mode="bilinear", align_corners=False, antialias=True)[0]
            x = x.clamp_(0.0, 1.0)
        return x, int(self.labels[i])
