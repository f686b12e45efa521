"""Batch augmentation for event clips and images: torch only, per sample, replayable, any device.

Inputs are event clips ``[B, T, C, H, W]`` (per-pixel event counts, float) or images ``[B, C, H, W]``
(float in [0, 1] before normalisation). Every random parameter is drawn per sample from the CPU
``torch.Generator`` passed in, so a run replays; all T frames of a clip get the same transform.
A policy is a callable ``policy(x, generator) -> x``; ``policy.sample(shape, generator)`` /
``policy.apply(x, params)`` split the draws from their use.

Counts must stay counts. In ``mode="nearest"`` (default) the geometric ops move whole pixels along integer
index maps that are permutations of the pixel grid: translation and shear shift each row (column) by an
integer, and rotation is three such shears about an integer centre plus an integer shift (Paeth 1986, "A fast
algorithm for general raster rotation"), exact for multiples of 90°. So no count is duplicated or created;
counts moved off the frame are lost. torchvision's nearest rotation, used by the reference code, samples every
output pixel independently and so duplicates some pixels and drops others. The price: a pixel lands on
average 0.7 px (at most 1.8 px) from its exact rotated place, against 0.4 (0.7) px for nearest sampling.
``mode="bilinear"``/``"bicubic"`` resamples images through per-sample affine matrices
(``randaugment.affine_pixels``, the equivalent of ``F.affine_grid`` + ``F.grid_sample``).

Policies, and where their numbers come from (facts from the authors' code; the code here is ours):
- ``spikformer_event``: ZK-Zhou/spikformer ``cifar10dvs/train.py`` + ``autoaugment.py::SNNAugmentWide``.
  Per clip, horizontal flip p 0.5, then one op drawn uniformly from Identity / ShearX / TranslateX /
  TranslateY / Rotate / Cutout (that code lists no ShearY; ``shear_y=True`` adds it). The magnitude is one of
  31 bins of ``linspace(-v, v, 31)``, its sign flipped with p 0.5. Shear: v 0.3 rad given to torchvision as
  ``degrees(m)``, so the factor is ``tan(m)``, about the centre. Translate: ``int(m)`` px with v 5. Rotate:
  v 30° (2° steps). Nearest, zero fill. Cutout = ``RandomErasing(p=1, scale=(0.001, 0.11), ratio=(1, 1))``:
  a zero square of 0.1-11 % of the area, inside the frame.
- ``nda``: Li et al. 2022, "Neuromorphic Data Augmentation for Training Spiking Neural Networks",
  Intelligent-Computing-Lab-Yale/NDA_SNN ``functions/data_loaders.py`` (CIFAR10-DVS, 48x48 frames): one of
  roll (``torch.roll``, integer dy, dx each in [-5, 5]), rotate U(-30°, 30°), shear x with angle U(-30°, 30°)
  (factor ``tan``, about the centre), drawn uniformly. Nearest, zero fill, and no flip in that code.
- ``cifar``, ``spikformer_cifar``, ``imagenet``: see ``ImagePolicy`` and the registry below.
- ``mst_cifar`` / ``mst_cifar_eval``: MST (Wang et al. ICCV 2023), bic-L/Masked-Spiking-Transformer
  ``data/build.py``, CIFAR-10 and CIFAR-100 alike: ``RandomCrop(32, padding=4) -> Resize(224) ->
  RandomHorizontalFlip() -> ToTensor() -> Normalize((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))`` for
  training, ``Resize(224) -> ToTensor() -> Normalize(...)`` for evaluation. ``Resize`` is torchvision's with its
  default interpolation, bilinear, on PIL images (the ``bicubic`` of that code's config, ``DATA.INTERPOLATION``,
  reaches only its timm ImageNet transforms). ``resize_like_pil`` reproduces Pillow's resize.
- ``digits``: integer shifts of up to ±2 px (zero fill), no flip (a mirrored digit is another symbol or none);
  ours, for the bundled static ``digits`` set.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ..config import close_matches_hint
from .augment_ops import (
    _check,
    _col,
    _fill_of,
    _flip_map,
    _grid,
    _rotation_map,
    _shear_map,
    _translate_map,
    cutout,
    hflip,
    normalize,
    roll,
    rotate,
    shear,
    translate,
)
from .randaugment import (
    SPIKFORMER_CIFAR_OPS,
    TIMM_INCREASING_OPS,
    TIMM_OPS,
    RandAugment,
    apply_erasing,
    erasing_params,
    random_erasing,
    sample_pixels,
)

__all__ = [
    "CIFAR10_MEAN", "CIFAR10_STD", "IMAGENET_MEAN", "IMAGENET_STD", "hflip", "translate", "rotate", "shear",
    "roll", "cutout", "normalize", "random_erasing", "erasing_params", "apply_erasing", "SpikformerEventAugment",
    "NDAAugment", "Flip", "Identity", "Normalize", "ImagePolicy", "AUGMENTATIONS", "get_augment",
    "MST_CIFAR_MEAN", "MST_CIFAR_STD", "resize_like_pil", "RandomTranslate", "ResizePolicy", "ResizeNormalize",
]

# Spikformer cifar10/cifar10.yml and imagenet/imagenet.yml (the CIFAR-10 std of the full training set)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# MST data/build.py, for CIFAR-10 and CIFAR-100: the CIFAR-10 mean with the widely copied (0.2023, ...) std
MST_CIFAR_MEAN, MST_CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


# ---------------------------------------------------------------- policies
def _check_generator(generator: torch.Generator) -> None:
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        raise ValueError("augmentation needs a CPU torch.Generator (its draws make the run replayable)")


class _Policy:
    """A random policy. ``sample(shape, generator)`` draws every per-sample parameter (CPU tensors; the same number
    of draws whatever they turn out to be, so the random stream never depends on the data); ``apply(x, params)``
    uses them on ``x`` of that shape, on its device."""

    image_only = False

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        _check(x, self.image_only)
        _check_generator(generator)
        return self.apply(x, self.sample(x.shape, generator))


class Identity:
    """``"none"``: returns the batch unchanged (draws nothing)."""

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return x

    def __repr__(self) -> str:
        return "Identity()"


class Normalize:
    """Eval transform: ``normalize(x, mean, std)`` (draws nothing)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return normalize(x, self.mean, self.std)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class Flip(_Policy):
    """Horizontal flip with probability ``p`` per sample."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def sample(self, shape, generator):
        return {"flip": torch.rand(shape[0], generator=generator, dtype=torch.float64) < self.p}

    def apply(self, x, params):
        return hflip(x, params["flip"])

    def __repr__(self) -> str:
        return f"Flip(p={self.p})"


class SpikformerEventAugment(_Policy):
    """Spikformer's event-data policy (``SNNAugmentWide`` after a flip); values in the module docstring."""

    def __init__(self, *, flip_p: float = 0.5, shear: float = 0.3, translate: float = 5.0, degrees: float = 30.0,
                 cutout_area: tuple[float, float] = (0.001, 0.11), bins: int = 31, shear_y: bool = False) -> None:
        self.flip_p, self.shear, self.translate, self.degrees = flip_p, shear, translate, degrees
        self.cutout_area, self.bins, self.shear_y = cutout_area, bins, shear_y
        self.ops = ("identity", "shear_x", "translate_x", "translate_y", "rotate", "cutout") + \
            (("shear_y",) if shear_y else ())

    def sample(self, shape, generator):
        B, H, W = shape[0], shape[-2], shape[-1]
        flip = torch.rand(B, generator=generator, dtype=torch.float64) < self.flip_p
        op = torch.randint(len(self.ops), (B,), generator=generator)
        bins = torch.linspace(-1.0, 1.0, self.bins, dtype=torch.float64)
        level = bins[torch.randint(self.bins, (B,), generator=generator)]
        level = level * torch.where(torch.randint(2, (B,), generator=generator) == 1, -1.0, 1.0)
        area = self.cutout_area[0] + (self.cutout_area[1] - self.cutout_area[0]) * torch.rand(
            B, generator=generator, dtype=torch.float64)
        lo, hi = math.ceil(math.sqrt(self.cutout_area[0] * H * W)), math.floor(math.sqrt(self.cutout_area[1] * H * W))
        # torchvision rounds the side; clamping keeps the area inside the documented range
        side = torch.round(torch.sqrt(area * H * W)).clamp(lo, max(lo, min(hi, H - 1, W - 1)))
        u = torch.rand(B, 2, generator=generator, dtype=torch.float64)
        is_op = {name: op == k for k, name in enumerate(self.ops)}
        shear_f = torch.tan(level * self.shear)
        shift = torch.trunc(level * self.translate)  # torchvision gets int(magnitude)
        return {
            "flip": flip, "op": op,
            "shear_x": torch.where(is_op["shear_x"], shear_f, 0.0),
            "shear_y": torch.where(is_op.get("shear_y", torch.zeros(B, dtype=torch.bool)), shear_f, 0.0),
            "dx": torch.where(is_op["translate_x"], shift, 0.0), "dy": torch.where(is_op["translate_y"], shift, 0.0),
            "angle": torch.where(is_op["rotate"], level * self.degrees, 0.0),
            "cut_size": torch.where(is_op["cutout"], side, 0.0),
            "cut_top": torch.floor(u[:, 0] * (H - side + 1)), "cut_left": torch.floor(u[:, 1] * (W - side + 1)),
        }

    def apply(self, x, params):
        H, W = x.shape[-2:]
        X, Y = _grid(x)
        # at most one op is not the identity per sample, so the order of these maps does not matter
        X, Y = _translate_map(X, Y, params["dx"], params["dy"])
        X, Y = _shear_map(X, Y, params["shear_x"], "x", H, W)
        X, Y = _shear_map(X, Y, params["shear_y"], "y", H, W)
        X, Y = _rotation_map(X, Y, params["angle"], H, W)
        X = _flip_map(X, params["flip"], W)  # the flip came first, so it is the last step back to the source
        x = sample_pixels(x, X, Y, mode="nearest")
        return cutout(x, params["cut_top"], params["cut_left"], params["cut_size"])

    def __repr__(self) -> str:
        return (f"SpikformerEventAugment(flip_p={self.flip_p}, ops={list(self.ops)}, shear=±{self.shear} rad, "
                f"translate=±{self.translate} px, rotate=±{self.degrees}°, bins={self.bins}, "
                f"cutout_area={self.cutout_area})")


class NDAAugment(_Policy):
    """NDA (Li et al. 2022) for event frames: one of roll / rotate / shear per clip; values in the module docstring."""

    ops = ("roll", "rotate", "shear")

    def __init__(self, *, max_roll: int = 5, degrees: float = 30.0, shear_degrees: float = 30.0,
                 flip_p: float = 0.0) -> None:
        self.max_roll, self.degrees, self.shear_degrees, self.flip_p = max_roll, degrees, shear_degrees, flip_p

    def sample(self, shape, generator):
        B = shape[0]
        flip = torch.rand(B, generator=generator, dtype=torch.float64) < self.flip_p
        op = torch.randint(3, (B,), generator=generator)
        shifts = torch.randint(-self.max_roll, self.max_roll + 1, (B, 2), generator=generator).double()
        u = torch.rand(B, 2, generator=generator, dtype=torch.float64) * 2 - 1
        return {
            "flip": flip, "op": op,
            "roll_dx": torch.where(op == 0, shifts[:, 0], 0.0), "roll_dy": torch.where(op == 0, shifts[:, 1], 0.0),
            "angle": torch.where(op == 1, u[:, 0] * self.degrees, 0.0),
            "shear_x": torch.where(op == 2, torch.tan(torch.deg2rad(u[:, 1] * self.shear_degrees)), 0.0),
        }

    def apply(self, x, params):
        H, W = x.shape[-2:]
        X, Y = _grid(x)
        X, Y = _rotation_map(X, Y, params["angle"], H, W)
        X, Y = _shear_map(X, Y, params["shear_x"], "x", H, W)
        rolled = _col(params["op"] == 0, x.device).bool()
        X = torch.where(rolled, torch.remainder(X - _col(params["roll_dx"], x.device), W), X)
        Y = torch.where(rolled, torch.remainder(Y - _col(params["roll_dy"], x.device), H), Y)
        X = _flip_map(X, params["flip"], W)
        return sample_pixels(x, X, Y, mode="nearest")

    def __repr__(self) -> str:
        return (f"NDAAugment(ops={list(self.ops)}, roll=±{self.max_roll} px, rotate=±{self.degrees}°, "
                f"shear_x=±{self.shear_degrees}°, flip_p={self.flip_p})")


class ImagePolicy(_Policy):
    """Static images ``[B, C, H, W]`` in [0, 1]: random crop (zero padding) -> flip -> RandAugment -> normalise
    -> random erasing (timm's order: ``transforms_imagenet_train`` then the prefetcher's ``RandomErasing``)."""

    image_only = True

    def __init__(self, *, mean: Sequence[float], std: Sequence[float], crop_padding: int = 0, flip_p: float = 0.5,
                 randaugment: RandAugment | None = None, erasing_p: float = 0.0, erasing_mode: str = "const") -> None:
        self.mean, self.std, self.crop_padding, self.flip_p = tuple(mean), tuple(std), crop_padding, flip_p
        self.randaugment, self.erasing_p, self.erasing_mode = randaugment, erasing_p, erasing_mode

    def sample(self, shape, generator):
        B, P = shape[0], self.crop_padding
        return {
            "crop": torch.randint(0, 2 * P + 1, (B, 2), generator=generator).double() - P,  # offset into the padding
            "flip": torch.rand(B, generator=generator, dtype=torch.float64) < self.flip_p,
            "ra": self.randaugment.sample(B, generator) if self.randaugment is not None else None,
            "erase": erasing_params(shape, generator, p=self.erasing_p, mode=self.erasing_mode),
        }

    def apply(self, x, params):
        X, Y = _grid(x)
        X = _flip_map(X, params["flip"], x.shape[-1])  # flip(crop(x)): the flip is undone first
        X, Y = _translate_map(X, Y, -params["crop"][:, 1], -params["crop"][:, 0])
        x = sample_pixels(x, X, Y, mode="nearest")
        if self.randaugment is not None:
            x = self.randaugment.apply(x, params["ra"])
        x = normalize(x, self.mean, self.std)
        return apply_erasing(x, params["erase"]) if self.erasing_p > 0 else x

    def __repr__(self) -> str:
        return (f"ImagePolicy(crop_padding={self.crop_padding}, flip_p={self.flip_p}, {self.randaugment}, "
                f"mean={self.mean}, std={self.std}, erasing_p={self.erasing_p}, erasing_mode={self.erasing_mode})")


def resize_like_pil(x: torch.Tensor, size: tuple[int, int], *, interpolation: str = "bilinear",
                    quantize: bool = True) -> torch.Tensor:
    """Resize images ``[B, C, H, W]`` (values in [0, 1]) to ``size`` as torchvision's ``Resize`` does on a PIL image.

    Pillow's filters are torch's antialiased ones (bilinear: the triangle filter with half-pixel centres and
    clamped edges, stretched when shrinking; bicubic: a = -0.5), applied as two passes, width then height, each
    into an 8-bit image. So: two ``F.interpolate`` passes on 8-bit levels, each rounded half up to a level when
    ``quantize`` (as Pillow's fixed-point sums). On images of 8-bit levels this is Pillow's result exactly for
    MST's 32 -> 224 (and other integer enlargements and halvings, tested); for other ratios Pillow's fixed-point
    weights (and, in recent Pillow, sometimes the other pass order) make it differ by a level or two at some
    pixels.
    Computed in float32 or float64; returned in ``x``'s dtype.
    """
    if interpolation not in ("bilinear", "bicubic"):
        raise ValueError(f"interpolation must be 'bilinear' or 'bicubic', got {interpolation!r}")
    _check(x, image_only=True)
    h, w = (int(v) for v in size)
    y = x if x.dtype in (torch.float32, torch.float64) else x.float()
    y = y * 255 if quantize else y  # 8-bit levels: the dyadic weights of integer ratios then sum exactly

    def resample(y: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        if tuple(y.shape[-2:]) == hw:
            return y
        y = F.interpolate(y, size=hw, mode=interpolation, align_corners=False, antialias=True)
        return torch.floor(y.clamp(0.0, 255.0) + 0.5) if quantize else y

    y = resample(resample(y, (y.shape[-2], w)), (h, w))  # [B, C, H, w] then [B, C, h, w]
    return (y / 255 if quantize else y).to(x.dtype)


class RandomTranslate(_Policy):
    """Shift each sample by integers ``(dx, dy)`` drawn uniformly from ``[-max_shift, max_shift]``, zero fill.

    x: ``[B, C, H, W]`` or clips ``[B, T, C, H, W]`` (all frames move together); counts are moved, never made.
    """

    def __init__(self, max_shift: int = 2) -> None:
        self.max_shift = int(max_shift)

    def sample(self, shape, generator):
        m = self.max_shift
        d = torch.randint(-m, m + 1, (shape[0], 2), generator=generator).double()  # [B, (dx, dy)]
        return {"dx": d[:, 0], "dy": d[:, 1]}

    def apply(self, x, params):
        return translate(x, params["dx"], params["dy"])

    def __repr__(self) -> str:
        return f"RandomTranslate(max_shift={self.max_shift})"


class ResizePolicy(_Policy):
    """MST's CIFAR training transform on batches ``[B, C, h, w]`` in [0, 1]: random crop of the input size from
    the zero-padded image (``crop_padding``), resize to ``size`` (:func:`resize_like_pil`), horizontal flip with
    probability ``flip_p``, normalisation: torchvision's ``RandomCrop(h, padding) -> Resize(size) ->
    RandomHorizontalFlip(flip_p) -> ToTensor() -> Normalize(mean, std)``, in that order.

    The output is ``[B, C, *size]``: the data set must deliver the images at their native size (leave
    ``data.size`` unset) and the model takes ``output_size``.
    """

    image_only = True

    def __init__(self, *, size: tuple[int, int], mean: Sequence[float], std: Sequence[float], crop_padding: int = 4,
                 flip_p: float = 0.5, interpolation: str = "bilinear") -> None:
        self.output_size = (int(size[0]), int(size[1]))
        self.mean, self.std, self.crop_padding, self.flip_p = tuple(mean), tuple(std), crop_padding, flip_p
        self.interpolation = interpolation

    def sample(self, shape, generator):
        B, P = shape[0], self.crop_padding
        return {
            "crop": torch.randint(0, 2 * P + 1, (B, 2), generator=generator).double() - P,  # [B, (dy, dx)] - P
            "flip": torch.rand(B, generator=generator, dtype=torch.float64) < self.flip_p,
        }

    def apply(self, x, params):
        X, Y = _translate_map(*_grid(x), -params["crop"][:, 1], -params["crop"][:, 0])
        x = sample_pixels(x, X, Y, mode="nearest")  # the crop: outside the image reads the zero padding
        x = resize_like_pil(x, self.output_size, interpolation=self.interpolation)
        return normalize(hflip(x, params["flip"]), self.mean, self.std)

    def __repr__(self) -> str:
        return (f"ResizePolicy(crop_padding={self.crop_padding}, size={self.output_size}, "
                f"interpolation={self.interpolation}, flip_p={self.flip_p}, mean={self.mean}, std={self.std})")


class ResizeNormalize:
    """Eval transform: :func:`resize_like_pil` to ``size``, then ``normalize`` (draws nothing): torchvision's
    ``Resize(size) -> ToTensor() -> Normalize(mean, std)``. Output ``[B, C, *size]`` (``output_size``)."""

    def __init__(self, *, size: tuple[int, int], mean: Sequence[float], std: Sequence[float],
                 interpolation: str = "bilinear") -> None:
        self.output_size = (int(size[0]), int(size[1]))
        self.mean, self.std, self.interpolation = tuple(mean), tuple(std), interpolation

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = resize_like_pil(x, self.output_size, interpolation=self.interpolation)
        return normalize(x, self.mean, self.std)

    def __repr__(self) -> str:
        return (f"ResizeNormalize(size={self.output_size}, interpolation={self.interpolation}, mean={self.mean}, "
                f"std={self.std})")


AUGMENTATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "none": Identity(),
    "flip": Flip(0.5),
    "spikformer_event": SpikformerEventAugment(),
    "nda": NDAAugment(),
    # a generic CIFAR recipe: RandomCrop(32, padding=4), flip, timm rand-m9-n1 (bilinear), RE 0.25
    "cifar": ImagePolicy(mean=CIFAR10_MEAN, std=CIFAR10_STD, crop_padding=4, erasing_p=0.25, randaugment=RandAugment(
        TIMM_OPS, num_ops=1, magnitude=9, fill=_fill_of(CIFAR10_MEAN), interpolation="bilinear")),
    # Spikformer's CIFAR code: crop scale (1, 1) = no crop; aa_snn.py's 5 ops, rand-m9-n1-mstd0.4-inc1, bicubic;
    # reprob 0.25, remode const
    "spikformer_cifar": ImagePolicy(mean=CIFAR10_MEAN, std=CIFAR10_STD, erasing_p=0.25, randaugment=RandAugment(
        SPIKFORMER_CIFAR_OPS, num_ops=1, magnitude=9, magnitude_std=0.4, fill=_fill_of(CIFAR10_MEAN),
        interpolation="bicubic")),
    # Spikformer imagenet.yml: flip 0.5, rand-m9-mstd0.5-inc1 (n 2), bicubic, reprob 0.25 const. The random
    # resized crop is done at loading; the flip is done here, so the loader must not flip too
    "imagenet": ImagePolicy(mean=IMAGENET_MEAN, std=IMAGENET_STD, erasing_p=0.25, randaugment=RandAugment(
        TIMM_INCREASING_OPS, num_ops=2, magnitude=9, magnitude_std=0.5, fill=_fill_of(IMAGENET_MEAN),
        interpolation="bicubic")),
    "cifar_eval": Normalize(CIFAR10_MEAN, CIFAR10_STD),
    "imagenet_eval": Normalize(IMAGENET_MEAN, IMAGENET_STD),
    # MST data/build.py: CIFAR at 224 x 224 for Swin-T; torchvision's default (bilinear) Resize on PIL images
    "mst_cifar": ResizePolicy(size=(224, 224), mean=MST_CIFAR_MEAN, std=MST_CIFAR_STD, crop_padding=4, flip_p=0.5),
    "mst_cifar_eval": ResizeNormalize(size=(224, 224), mean=MST_CIFAR_MEAN, std=MST_CIFAR_STD),
    # the bundled static digits: small shifts only (no flip: digits are not mirror-symmetric); no normalisation
    "digits": RandomTranslate(2),
}


def get_augment(name: str) -> Callable[..., torch.Tensor]:
    """The registered policy ``name``; ``ValueError`` naming the valid ones otherwise."""
    try:
        return AUGMENTATIONS[name]
    except KeyError:
        raise ValueError(f"unknown augmentation {name!r}.{close_matches_hint(name, AUGMENTATIONS)} "
                         f"Valid names: {', '.join(sorted(AUGMENTATIONS))}") from None
