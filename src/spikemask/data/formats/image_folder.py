"""ImageNet-style image folders read with PIL, and the timm/torchvision image transforms, without torchvision.

Layout (data.md, ImageNet row)::

    <root>/train/<wnid>/*.JPEG
    <root>/val/<wnid>/*.JPEG                          by class, or
    <root>/val/*.JPEG + a labels file                 flat, labelled by (first found, in this order)
        <root>/LOC_val_solution.csv or <root>/val/LOC_val_solution.csv   Kaggle: "ImageId,PredictionString",
                                                      ImageId = file stem, first token of PredictionString = wnid
        <root>/val_labels.txt or <root>/val/val_labels.txt               "<filename> <wnid>" per line

Classes are the sorted wnid folders of ``train/`` (torchvision ``ImageFolder`` order, so label ``i`` is the
same class in both splits); files are sorted by class then name, so the order is the same on every file system.

Transforms reproduce timm's ImageNet defaults with PIL (bicubic): eval resizes the shorter side to
``int(size / 0.875)`` (crop_pct 0.875) and center-crops ``size``; train is RandomResizedCrop(scale (0.08, 1),
ratio (3/4, 4/3)) + horizontal flip with p 0.5, drawing every random number from a ``torch.Generator``.
``size`` is 224 for ImageNet by default; a non-square ``(H, W)`` follows timm too (eval: ``ResizeKeepRatio``
to ``(H, W) / 0.875``, then the center crop).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..events import one_line, read_file

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageFileError",
    "scan_image_folder",
    "load_image",
    "center_crop_box",
    "random_resized_crop_box",
]

log = logging.getLogger(__name__)

# torchvision's IMG_EXTENSIONS, compared case-insensitively (ImageNet writes ".JPEG")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
CROP_PCT = 0.875
LABEL_FILES = ("LOC_val_solution.csv", "val_labels.txt")


class ImageFileError(ValueError):
    """An image, image batch or labels file is unreadable or malformed; the message names the file."""


def _images_in(folder: Path) -> list[Path]:
    # scandir: the file type comes with the listing, no stat per file (ImageNet train has 1.28 M)
    with os.scandir(folder) as it:
        names = [
            e.name
            for e in it
            if e.name.lower().endswith(IMAGE_EXTENSIONS) and not e.name.startswith(".") and e.is_file()
        ]
    return [folder / n for n in sorted(names)]


def _class_dirs(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def _by_class(folder: Path, classes: list[str]) -> tuple[list[Path], np.ndarray]:
    index = {c: i for i, c in enumerate(classes)}
    files: list[Path] = []
    labels: list[int] = []
    for wnid in _class_dirs(folder):
        if wnid not in index:
            raise ImageFileError(
                f"{folder / wnid}: class folder {wnid!r} is not one of the {len(classes)} train classes"
            )
        found = _images_in(folder / wnid)
        if not found:  # torchvision refuses empty classes too: usually a broken extraction
            raise ImageFileError(f"{folder / wnid}: class folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        files += found
        labels += [index[wnid]] * len(found)
    return files, np.asarray(labels, dtype=np.int64)


def _read_labels_file(path: Path) -> dict[str, str]:
    """``{file stem or name: wnid}`` from a Kaggle CSV or a ``filename wnid`` text file."""
    out: dict[str, str] = {}
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            if path.suffix == ".csv":
                reader = csv.reader(fh)
                head = next(reader, None)
                if head is None or [h.strip() for h in head[:2]] != ["ImageId", "PredictionString"]:
                    raise ImageFileError(f"{path}: expected the header 'ImageId,PredictionString', got {head}")
                for n, row in enumerate(reader, start=2):
                    if not row:
                        continue
                    if len(row) < 2 or not row[0].strip() or not row[1].split():
                        raise ImageFileError(f"{path}, line {n}: expected 'ImageId,<wnid> ...', got {row}")
                    out[row[0].strip()] = row[1].split()[0]
            else:
                for n, line in enumerate(fh, start=1):
                    words = line.split()
                    if not words:
                        continue
                    if len(words) != 2:
                        raise ImageFileError(f"{path}, line {n}: expected '<filename> <wnid>', got {line.rstrip()!r}")
                    out[words[0]] = words[1]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ImageFileError(f"{path}: unreadable labels file ({one_line(err)})") from err
    if not out:
        raise ImageFileError(f"{path}: labels file lists no images")
    return out


def _flat(folder: Path, root: Path, classes: list[str] | None) -> tuple[list[Path], np.ndarray, list[str]]:
    candidates = [d / name for name in LABEL_FILES for d in (root, folder)]
    label_path = next((p for p in candidates if p.is_file()), None)
    if label_path is None:
        raise ImageFileError(
            f"{folder}: flat folder without a labels file; expected one of {', '.join(str(p) for p in candidates)}"
        )
    table = _read_labels_file(label_path)
    log.debug("labelling %s from %s", folder, label_path)
    if classes is None:
        classes = sorted(set(table.values()))
        log.warning("%s: no train/ folder; classes taken from %s (%d wnids)", root, label_path, len(classes))
    index = {c: i for i, c in enumerate(classes)}
    files = _images_in(folder)
    if not files:
        raise ImageFileError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    labels = np.empty(len(files), dtype=np.int64)
    for i, f in enumerate(files):  # one dict lookup per file: 50 000 at most
        wnid = table.get(f.name, table.get(f.stem))
        if wnid is None:
            raise ImageFileError(f"{label_path}: no label for {f.name}")
        if wnid not in index:
            raise ImageFileError(f"{label_path}: {f.name} is labelled {wnid!r}, which is not a train class")
        labels[i] = index[wnid]
    return files, labels, classes


def scan_image_folder(root: str | os.PathLike, split: str) -> tuple[list[Path], np.ndarray, list[str]]:
    """List one split: ``(files [N], labels int64 [N], classes)`` with ``classes`` the sorted train wnids.

    ``split`` is ``"train"`` or ``"val"``. ``val/`` is read by class when it has sub-folders, otherwise
    flat with a labels file (module docstring). Raises ``FileNotFoundError`` for a missing split folder
    and :class:`ImageFileError` for empty classes, unknown wnids, unlabelled images or bad labels files.
    """
    root = Path(root)
    if split not in ("train", "val"):
        raise ValueError(f"unknown split {split!r}; expected 'train' or 'val'")
    folder = root / split
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder}: no such folder; expected {root}/train/<wnid>/*.JPEG and {root}/val/ (by class, or flat "
            "with LOC_val_solution.csv or val_labels.txt). spikemask never downloads data."
        )
    train = root / "train"
    classes = _class_dirs(train) if train.is_dir() else None
    if classes is not None and not classes:
        raise ImageFileError(f"{train}: no class folders")
    if _class_dirs(folder):
        if classes is None:
            classes = _class_dirs(folder)
            log.warning("%s: no train/ folder; classes taken from %s", root, folder)
        files, labels = _by_class(folder, classes)
        return files, labels, classes
    return _flat(folder, root, classes)


def center_crop_box(width: int, height: int, size: int | tuple[int, int]) -> tuple[int, int, int, int]:
    """torchvision ``CenterCrop`` box ``(left, top, right, bottom)`` for ``size`` (side, or ``(h, w)``):
    offsets rounded half to even, as there."""
    h, w = (size, size) if isinstance(size, int) else size
    left, top = int(round((width - w) / 2.0)), int(round((height - h) / 2.0))
    return left, top, left + w, top + h


def random_resized_crop_box(
    width: int,
    height: int,
    generator: torch.Generator | None,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """torchvision ``RandomResizedCrop.get_params`` as ``(left, top, right, bottom)``: ten tries at a random
    area fraction and log-uniform aspect ratio, then a center crop clamped to ``ratio``."""
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        aspect = math.exp(torch.empty(1).uniform_(log_lo, log_hi, generator=generator).item())
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator).item())
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator).item())
            return left, top, left + w, top + h
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def _eval_resize(width: int, height: int, h: int, w: int) -> tuple[int, int]:
    """The ``(width, height)`` timm's eval transform resizes to before its ``h x w`` center crop."""
    if h == w:  # torchvision Resize(int): shorter side -> int(size / crop_pct), longer side truncated
        short = int(h / CROP_PCT)
        return (short, int(short * height / width)) if width <= height else (int(short * width / height), short)
    # timm ResizeKeepRatio (non-square targets): scale so that the image just covers (h, w) / crop_pct
    ratio = min(height / math.floor(h / CROP_PCT), width / math.floor(w / CROP_PCT))
    return round(width / ratio), round(height / ratio)


def load_image(
    path: str | os.PathLike,
    size: int | tuple[int, int] = 224,
    train: bool = False,
    generator: torch.Generator | None = None,
    *,
    flip: bool = True,
) -> torch.Tensor:
    """Read one image as ``uint8 [3, H, W]`` RGB, transformed for training or evaluation (module docstring).

    ``size``: ``(H, W)``, or one int for a square. Grayscale, CMYK, palette and RGBA files (and PNGs named
    ``.JPEG``: PIL goes by content) are converted to RGB. ``generator`` drives every random choice of the
    train transform (``None``: torch's global RNG); ``flip=False`` leaves the horizontal flip to a batch
    augmentation. Raises ``FileNotFoundError`` for a missing file and :class:`ImageFileError` naming the file
    when it cannot be read or decoded (a directory, no permission, empty, truncated, not an image).
    """
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    path, raw = read_file(path, "image file", error=ImageFileError)
    if not raw:
        raise ImageFileError(f"{path}: empty file (expected an image)")
    try:
        with Image.open(io.BytesIO(raw)) as im:
            img = im.convert("RGB")  # decodes the whole file, so truncation is caught here
    except UnidentifiedImageError:
        raise ImageFileError(f"{path}: unreadable image (not a format PIL can identify)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageFileError(f"{path}: unreadable image ({one_line(err)})") from err
    width, height = img.size
    if train:
        box = random_resized_crop_box(width, height, generator)
        img = img.crop(box).resize((w, h), Image.Resampling.BICUBIC)  # torchvision resized_crop on PIL
        if flip and torch.rand(1, generator=generator).item() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    else:
        new_w, new_h = _eval_resize(width, height, h, w)
        if (new_w, new_h) != (width, height):  # untouched if already there, as torchvision
            img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
        img = img.crop(center_crop_box(new_w, new_h, (h, w)))
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous()  # [H, W, 3] -> [3, H, W]
