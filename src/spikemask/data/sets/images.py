"""Static image sets: CIFAR-10/100 (python pickle batches) and ImageNet (class folders, read with PIL).

Items are ``float32 [3, H, W]`` in [0, 1]; normalisation and augmentation (the flip included) run batched
in torch (see ``spikemask.data.augment``). ImageNet's random resized crop happens at load time from a
generator seeded by (seed, epoch, index): call ``set_epoch`` every epoch (the training loop does), and the
crops replay exactly whatever the number of loader workers.

``size`` (``data.size``, ``(H, W)``): ImageNet's crop size for both transforms (default 224 x 224); CIFAR
images are resized from 32 x 32 (bilinear, antialiased, as torchvision's ``Resize``) when they are read.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..event_dataset import DatasetNotFoundError, check_size
from ..formats.cifar import load_cifar
from ..formats.image_folder import load_image, scan_image_folder
from ..paths import default_data_root


class CIFAR(Dataset):
    """CIFAR-10 (``name="cifar10"``) or CIFAR-100 (``"cifar100"``); ``root`` holds the extracted archive.

    ``size``: ``(H, W)`` to resize every image to (None: the native 32 x 32, untouched).
    """

    def __init__(self, root: str | os.PathLike | None = None, split: str = "train", *, name: str = "cifar10",
                 size: tuple[int, int] | None = None, **_: object) -> None:
        self.size = check_size(name, size) or (32, 32)
        self.root = Path(root) if root is not None else default_data_root() / name
        self.images, labels, self.classes = load_cifar(self.root, name, split)  # uint8 [N, 3, 32, 32]
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(self.images[i]).float().div_(255.0)  # [3, 32, 32]
        if self.size != (32, 32):  # one image at a time: a resized copy of the whole set could be huge
            x = F.interpolate(x[None], size=self.size, mode="bilinear", align_corners=False, antialias=True)[0]
            x = x.clamp_(0.0, 1.0)
        return x, int(self.labels[i])


class ImageNet(Dataset):
    """ILSVRC-2012 class folders: train with random resized crops, val with resize + centre crop, to ``size``.

    ``size``: ``(H, W)`` (or one int) of the crops, default 224 x 224. The horizontal flip is left to the batch
    augmentation (``imagenet`` policy), so a clip is never flipped twice.
    """

    def __init__(self, root: str | os.PathLike | None = None, split: str = "train", *,
                 size: int | tuple[int, int] = 224, seed: int = 0, **_: object) -> None:
        size = check_size("imagenet", size)
        self.root = Path(root) if root is not None else default_data_root() / "imagenet"
        if not self.root.is_dir():
            raise DatasetNotFoundError(
                f"imagenet: {self.root} does not exist. Expected train/<wnid>/*.JPEG and val/<wnid>/*.JPEG "
                "(or a flat val/ with LOC_val_solution.csv); obtain ILSVRC-2012 from https://image-net.org "
                "(spikemask never downloads data)")
        self.split, self.size, self.seed, self.epoch = split, size, seed, 0
        self.files, labels, self.classes = scan_image_folder(self.root, "train" if split == "train" else "val")
        self.labels = np.asarray(labels, dtype=np.int64)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        train = self.split == "train"
        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 10_000_019 + i) if train else None
        image = load_image(self.files[i], size=self.size, train=train, generator=gen, flip=False)  # uint8 [3, H, W]
        return image.float().div_(255.0), int(self.labels[i])
