"""RandAugment and random erasing on batched float images, in plain torch, with per-sample draws.

Images are ``[B, C, H, W]`` (C 3 or 1), float, values in [0, 1] (before normalisation). Every op
takes per-sample arguments as a ``[B]`` tensor (or a Python number for all samples).

Facts taken from timm's ``timm/data/auto_augment.py`` (Ross Wightman), re-implemented here:
- op sets ``_RAND_TRANSFORMS`` / ``_RAND_INCREASING_TRANSFORMS`` (15 ops, no Cutout), the magnitude
  scale ``_LEVEL_DENOM = 10`` (``_MAX_LEVEL``), each chosen op applied with probability 0.5, ops chosen
  uniformly *with* replacement, optional magnitude noise ``mstd`` (``N(m, mstd)``, clipped to
  [0, 10]; ``inf`` means ``U(0, m)``);
- level -> argument: Rotate ±30°·m/10, ShearX/Y ±0.3·m/10, TranslateX/YRel ±0.45·m/10 of the size
  (sign negated with probability 0.5); Posterize ``int(4·m/10)`` bits kept (increasing: ``4 - that``),
  Solarize threshold ``int(256·m/10)`` (increasing: ``256 - that``), SolarizeAdd ``int(110·m/10)`` added
  below 128; Color/Contrast/Brightness/Sharpness factor ``1.8·m/10 + 0.1`` (increasing:
  ``max(0.1, 1 ± 0.9·m/10)``);
- geometry as PIL does it for timm: rotation about the centre (counter-clockwise positive), shear
  ``(1, f, 0, 0, 1, 0)`` about the *top/left edge*, translation by a fraction of the size, out-of-image
  pixels filled with the data set's mean colour (``img_mean``).
Pixel ops follow Pillow's 8-bit semantics (``ImageOps``/``ImageEnhance``): levels are
``round(255 x)``; grey is ITU-R 601 luma rounded to a level; SMOOTH is the 3x3 kernel
``[[1,1,1],[1,5,1],[1,1,1]] / 13`` with the border left untouched. Results stay float (Pillow
truncates to uint8, so they differ from Pillow by less than 1/255).

The Spikformer CIFAR code (``cifar10/aa_snn.py``, ZK-Zhou/spikformer) keeps only five ops:
``SPIKFORMER_CIFAR_OPS``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "LEVEL_DENOM", "TIMM_OPS", "TIMM_INCREASING_OPS", "SPIKFORMER_CIFAR_OPS", "RandAugment",
    "sample_pixels", "affine_pixels", "auto_contrast", "equalize", "invert", "posterize", "solarize",
    "solarize_add", "color", "contrast", "brightness", "sharpness", "ra_rotate", "ra_shear", "ra_translate",
    "level_to_arg", "apply_op", "erasing_params", "apply_erasing", "random_erasing",
]

LEVEL_DENOM = 10.0
TIMM_OPS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
    "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
)
TIMM_INCREASING_OPS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing", "SolarizeAdd",
    "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY",
    "TranslateXRel", "TranslateYRel",
)
SPIKFORMER_CIFAR_OPS = ("Equalize", "Rotate", "ShearX", "TranslateXRel", "TranslateYRel")
_LUMA_FIXED = (19595.0, 38470.0, 7471.0)  # ITU-R 601-2 luma (0.299, 0.587, 0.114) * 2**16, as Pillow


# ---------------------------------------------------------------- sampling core (shared with augment.py)
def _per_sample(v, B: int, device, dtype=torch.float32) -> torch.Tensor:
    """A number or ``[B]`` values -> ``[B]`` tensor on ``device``."""
    t = torch.as_tensor(v, dtype=dtype)
    return (t.expand(B) if t.dim() == 0 else t).to(device)


def sample_pixels(x: torch.Tensor, src_x: torch.Tensor, src_y: torch.Tensor, *, mode: str = "bilinear",
                  fill=0.0) -> torch.Tensor:
    """Resample ``x [B, ..., H, W]`` at source pixel coordinates ``src_x, src_y [B, H, W]`` (index units).

    Every channel / frame of a sample uses the same coordinates. Outside the image reads ``fill`` (a number or
    one value per channel, channel dim -3). With ``mode="nearest"`` and integer coordinates this is an exact copy.
    """
    B, H, W = x.shape[0], x.shape[-2], x.shape[-1]
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    fill_t = torch.as_tensor(fill, dtype=torch.float64).cpu()  # decided on the CPU: no device sync
    shift = bool((fill_t != 0).any())
    if shift:  # sample x - fill with zero padding, add fill back: outside -> fill, edges blend towards it
        fill_t = fill_t.to(device=x.device, dtype=work.dtype).reshape(-1, 1, 1)
        work = work - fill_t
    flat = work.reshape(B, -1, H, W)
    grid = torch.stack(((2 * src_x + 1) / W - 1, (2 * src_y + 1) / H - 1), dim=-1).to(work.dtype)  # [B, H, W, 2]
    out = F.grid_sample(flat, grid, mode=mode, padding_mode="zeros", align_corners=False).reshape(work.shape)
    if shift:
        out = out + fill_t
    return out.to(x.dtype)


def _pixel_grid(H: int, W: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    ys, xs = torch.meshgrid(torch.arange(H, device=device, dtype=torch.float32),
                            torch.arange(W, device=device, dtype=torch.float32), indexing="ij")
    return xs[None], ys[None]  # [1, H, W]


def affine_pixels(x: torch.Tensor, matrix: torch.Tensor, *, mode: str = "bilinear", fill=0.0) -> torch.Tensor:
    """Backward affine warp: output pixel ``(x, y)`` reads source ``matrix[b] @ (x, y, 1)`` (pixel index units).

    x: ``[B, ..., H, W]``; matrix: ``[B, 2, 3]`` (one per sample, shared by all frames/channels).
    """
    xs, ys = _pixel_grid(x.shape[-2], x.shape[-1], x.device)
    m = matrix.to(device=x.device, dtype=torch.float32)[:, :, :, None, None]  # [B, 2, 3, 1, 1]
    src_x = m[:, 0, 0] * xs + m[:, 0, 1] * ys + m[:, 0, 2]
    src_y = m[:, 1, 0] * xs + m[:, 1, 1] * ys + m[:, 1, 2]
    return sample_pixels(x, src_x, src_y, mode=mode, fill=fill)


# ---------------------------------------------------------------- pixel ops (Pillow semantics)
def _col(v, x: torch.Tensor) -> torch.Tensor:
    return _per_sample(v, x.shape[0], x.device, x.dtype).reshape(-1, 1, 1, 1)


def _levels(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.clamp(0, 1) * 255)


def _gray_levels(x: torch.Tensor) -> torch.Tensor:
    """``[B, 1, H, W]`` grey levels 0..255 as Pillow's ``convert("L")`` gives them."""
    if x.shape[1] == 1:
        return _levels(x)
    if x.shape[1] != 3:
        raise ValueError(f"colour ops need 1 or 3 channels, got shape {tuple(x.shape)}")
    # Pillow's fixed-point luma; every intermediate is an integer below 2**24, exact even in float32
    w = torch.tensor(_LUMA_FIXED, dtype=x.dtype, device=x.device).reshape(1, 3, 1, 1)
    return torch.floor(((_levels(x) * w).sum(1, keepdim=True) + 32768) / 65536)


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor) -> torch.Tensor:
    """Pillow's ``Image.blend(degenerate, x, factor)``: 0 gives the degenerate image, 1 the input."""
    return (degenerate + _col(factor, x) * (x - degenerate)).clamp(0, 1)


def invert(x: torch.Tensor) -> torch.Tensor:
    return 1.0 - x


def auto_contrast(x: torch.Tensor) -> torch.Tensor:
    """Stretch each channel of each image to the full [0, 1] range (flat channels unchanged)."""
    lo = x.amin(dim=(-2, -1), keepdim=True)
    hi = x.amax(dim=(-2, -1), keepdim=True)
    flat = hi <= lo
    scale = torch.where(flat, torch.ones_like(hi), 1.0 / (hi - lo).clamp_min(1e-12))
    return torch.where(flat, x, ((x - lo) * scale).clamp(0, 1))


def equalize(x: torch.Tensor) -> torch.Tensor:
    """Pillow's ``ImageOps.equalize`` on the 8-bit levels of each channel of each image (exact)."""
    B, C, H, W = x.shape
    q = _levels(x).long().reshape(B * C, H * W)
    hist = torch.zeros(B * C, 256, dtype=torch.long, device=x.device).scatter_add_(1, q, torch.ones_like(q))
    nonzero = hist > 0
    last = 255 - nonzero.flip(1).long().argmax(1)  # highest occupied level
    step = (hist.sum(1) - hist.gather(1, last[:, None]).squeeze(1)) // 255
    keep = (nonzero.sum(1) <= 1) | (step == 0)  # Pillow leaves these channels alone
    step = step.clamp_min(1)[:, None]
    before = torch.cumsum(hist, 1) - hist  # pixels strictly below each level
    lut = ((step // 2 + before) // step).clamp_max(255)
    out = lut.gather(1, q).to(x.dtype).reshape(B, C, H, W) / 255
    return torch.where(keep.reshape(B, C, 1, 1), x, out)


def posterize(x: torch.Tensor, bits) -> torch.Tensor:
    """Keep the ``bits`` most significant bits of each 8-bit level (8: unchanged, 0: black, as old Pillow)."""
    div = torch.pow(2.0, 8 - _col(bits, x).clamp(0, 8))
    return torch.floor(_levels(x) / div) * div / 255


def solarize(x: torch.Tensor, threshold) -> torch.Tensor:
    """Invert levels ``>= threshold`` (0..256)."""
    return torch.where(_levels(x) >= _col(threshold, x), 1.0 - x, x)


def solarize_add(x: torch.Tensor, add, threshold: float = 128) -> torch.Tensor:
    """Add ``add`` levels to levels ``< threshold``, saturating at 255 (timm's ``solarize_add``)."""
    return torch.where(_levels(x) < threshold, (x + _col(add, x) / 255).clamp(max=1.0), x)


def color(x: torch.Tensor, factor) -> torch.Tensor:
    """Saturation: blend with the grey image (``ImageEnhance.Color``)."""
    return _blend(_gray_levels(x).expand_as(x) / 255, x, factor)


def contrast(x: torch.Tensor, factor) -> torch.Tensor:
    """Blend with the mean grey level, rounded to a level (``ImageEnhance.Contrast``)."""
    mean = torch.floor(_gray_levels(x).mean(dim=(1, 2, 3), keepdim=True) + 0.5)
    return _blend((mean / 255).expand_as(x), x, factor)


def brightness(x: torch.Tensor, factor) -> torch.Tensor:
    return _blend(torch.zeros_like(x), x, factor)


def sharpness(x: torch.Tensor, factor) -> torch.Tensor:
    """Blend with the SMOOTH-filtered image; border pixels are not filtered (``ImageEnhance.Sharpness``)."""
    C = x.shape[1]
    k = torch.tensor([[1.0, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=x.dtype, device=x.device) / 13
    smooth = torch.round(F.conv2d(_levels(x), k.expand(C, 1, 3, 3), groups=C)) / 255
    degenerate = x.clone()
    degenerate[..., 1:-1, 1:-1] = smooth
    return _blend(degenerate, x, factor)


# ---------------------------------------------------------------- geometric ops (timm/PIL conventions)
def _matrix(B: int, a, b, c, d, e, f) -> torch.Tensor:
    rows = [torch.stack([_per_sample(v, B, "cpu", torch.float64) for v in row], dim=-1)
            for row in ((a, b, c), (d, e, f))]
    return torch.stack(rows, dim=1)  # [B, 2, 3]


def ra_rotate(x: torch.Tensor, degrees, *, mode: str = "bilinear", fill=0.0) -> torch.Tensor:
    """Rotate about the image centre, counter-clockwise for positive ``degrees`` (PIL ``Image.rotate``)."""
    B, H, W = x.shape[0], x.shape[-2], x.shape[-1]
    th = torch.deg2rad(_per_sample(degrees, B, "cpu", torch.float64))
    cos, sin = torch.cos(th), torch.sin(th)
    cx, cy = (W - 1) / 2, (H - 1) / 2
    m = _matrix(B, cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy)
    return affine_pixels(x, m, mode=mode, fill=fill).clamp(0, 1)


def ra_shear(x: torch.Tensor, factor, *, axis: str = "x", mode: str = "bilinear", fill=0.0) -> torch.Tensor:
    """timm's ``shear_x``/``shear_y``: output ``(x, y)`` reads ``(x + f (y + 1/2), y)``, i.e. about the top edge
    (left edge for ``axis="y"``), as PIL's affine ``(1, f, 0, 0, 1, 0)`` on pixel centres."""
    B = x.shape[0]
    f = _per_sample(factor, B, "cpu", torch.float64)
    z, o = torch.zeros(B, dtype=torch.float64), torch.ones(B, dtype=torch.float64)
    m = _matrix(B, o, f, f / 2, z, o, z) if axis == "x" else _matrix(B, o, z, z, f, o, f / 2)
    return affine_pixels(x, m, mode=mode, fill=fill).clamp(0, 1)


def ra_translate(x: torch.Tensor, fraction, *, axis: str = "x", mode: str = "bilinear", fill=0.0) -> torch.Tensor:
    """timm's ``translate_*_rel``: output reads the source ``fraction * size`` pixels further along ``axis``."""
    B, H, W = x.shape[0], x.shape[-2], x.shape[-1]
    p = _per_sample(fraction, B, "cpu", torch.float64) * (W if axis == "x" else H)
    z, o = torch.zeros(B, dtype=torch.float64), torch.ones(B, dtype=torch.float64)
    m = _matrix(B, o, z, p, z, o, z) if axis == "x" else _matrix(B, o, z, z, z, o, p)
    return affine_pixels(x, m, mode=mode, fill=fill).clamp(0, 1)


# ---------------------------------------------------------------- RandAugment
def level_to_arg(name: str, magnitude: torch.Tensor, sign: torch.Tensor) -> torch.Tensor | None:
    """timm's ``LEVEL_TO_ARG``: per-sample magnitudes ``[B]`` (0..10) and signs ``[B]`` (±1) -> op arguments."""
    lv = magnitude.double() / LEVEL_DENOM
    base = name.removesuffix("Increasing")
    increasing = base != name
    if base == "Rotate":
        return lv * 30.0 * sign
    if base in ("ShearX", "ShearY"):
        return lv * 0.3 * sign
    if base in ("TranslateXRel", "TranslateYRel"):
        return lv * 0.45 * sign
    if base == "Posterize":
        bits = torch.floor(lv * 4)  # int() of a non-negative value
        return 4 - bits if increasing else bits
    if base == "Solarize":
        thr = torch.floor(lv * 256)
        return 256 - thr if increasing else thr
    if base == "SolarizeAdd":
        return torch.floor(lv * 110)
    if base in ("Color", "Contrast", "Brightness", "Sharpness"):
        return (1.0 + lv * 0.9 * sign).clamp_min(0.1) if increasing else lv * 1.8 + 0.1
    if base in ("AutoContrast", "Equalize", "Invert"):
        return None
    raise ValueError(f"unknown RandAugment op {name!r}; known: {', '.join(TIMM_OPS + TIMM_INCREASING_OPS)}")


def apply_op(name: str, x: torch.Tensor, arg, *, fill=0.0, mode: str = "bilinear") -> torch.Tensor:
    """Apply one named op (timm name) with per-sample arguments ``arg [B]`` (from ``level_to_arg``)."""
    base = name.removesuffix("Increasing")
    geo = dict(mode=mode, fill=fill)
    table = {
        "AutoContrast": lambda: auto_contrast(x), "Equalize": lambda: equalize(x), "Invert": lambda: invert(x),
        "Rotate": lambda: ra_rotate(x, arg, **geo), "Posterize": lambda: posterize(x, arg),
        "Solarize": lambda: solarize(x, arg), "SolarizeAdd": lambda: solarize_add(x, arg),
        "Color": lambda: color(x, arg), "Contrast": lambda: contrast(x, arg),
        "Brightness": lambda: brightness(x, arg), "Sharpness": lambda: sharpness(x, arg),
        "ShearX": lambda: ra_shear(x, arg, axis="x", **geo), "ShearY": lambda: ra_shear(x, arg, axis="y", **geo),
        "TranslateXRel": lambda: ra_translate(x, arg, axis="x", **geo),
        "TranslateYRel": lambda: ra_translate(x, arg, axis="y", **geo),
    }
    return table[base]()


class RandAugment:
    """timm-style RandAugment over ``[B, C, H, W]`` images in [0, 1], every choice drawn per sample.

    ``num_ops`` layers; in each, every sample picks one op uniformly (with replacement across layers),
    applies it with probability ``prob`` at magnitude ``magnitude`` (+ ``N(0, magnitude_std)`` noise,
    clipped to [0, ``magnitude_max``]). ``rand-m9-n1-mstd0.4-inc1`` is
    ``RandAugment(TIMM_INCREASING_OPS, num_ops=1, magnitude=9, magnitude_std=0.4)``.
    ``fill``: colour of pixels moved in from outside (timm: the data set mean); ``interpolation``:
    ``"bilinear"`` or ``"bicubic"`` for the geometric ops.
    """

    def __init__(self, ops: Sequence[str] = TIMM_OPS, *, num_ops: int = 2, magnitude: float = 9.0,
                 magnitude_std: float = 0.0, magnitude_max: float = LEVEL_DENOM, prob: float = 0.5,
                 fill: Sequence[float] | float = 0.5, interpolation: str = "bilinear") -> None:
        for name in ops:
            level_to_arg(name, torch.zeros(1), torch.ones(1))  # raises on unknown names
        if interpolation not in ("bilinear", "bicubic", "nearest"):
            raise ValueError(f"interpolation must be bilinear, bicubic or nearest, got {interpolation!r}")
        self.ops, self.num_ops, self.magnitude = tuple(ops), num_ops, magnitude
        self.magnitude_std, self.magnitude_max, self.prob = magnitude_std, magnitude_max, prob
        self.fill, self.interpolation = fill, interpolation

    def sample(self, batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Per-sample draws, each ``[num_ops, B]`` on the CPU; the same numbers are drawn whatever happens."""
        shape = (self.num_ops, batch)
        op = torch.randint(len(self.ops), shape, generator=generator)
        apply = torch.rand(shape, generator=generator, dtype=torch.float64) < self.prob
        noise = torch.randn(shape, generator=generator, dtype=torch.float64)
        uniform = torch.rand(shape, generator=generator, dtype=torch.float64)
        sign = torch.where(torch.rand(shape, generator=generator, dtype=torch.float64) > 0.5, -1.0, 1.0)
        if math.isinf(self.magnitude_std):
            mag = uniform * self.magnitude
        else:
            mag = self.magnitude + self.magnitude_std * noise
        mag = mag.clamp(0.0, self.magnitude_max)
        return {"op": op, "apply": apply, "magnitude": mag, "sign": sign}

    def apply(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"RandAugment expects images [B, C, H, W], got shape {tuple(x.shape)}")
        dtype = x.dtype
        if dtype not in (torch.float32, torch.float64):  # 8-bit level arithmetic needs float32 at least
            x = x.float()
        for layer in range(self.num_ops):
            for k, name in enumerate(self.ops):
                sel = ((params["op"][layer] == k) & params["apply"][layer]).nonzero().squeeze(1)
                if sel.numel() == 0:
                    continue
                arg = level_to_arg(name, params["magnitude"][layer, sel], params["sign"][layer, sel])
                idx = sel.to(x.device)
                out = apply_op(name, x.index_select(0, idx), arg, fill=self.fill, mode=self.interpolation)
                x = x.index_copy(0, idx, out.to(x.dtype))
        return x.to(dtype)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(x, self.sample(x.shape[0], generator))

    def __repr__(self) -> str:
        return (f"RandAugment(n={self.num_ops}, m={self.magnitude}, mstd={self.magnitude_std}, p={self.prob}, "
                f"interpolation={self.interpolation}, ops={list(self.ops)})")


# ---------------------------------------------------------------- random erasing (timm, after normalisation)
def erasing_params(shape: Sequence[int], generator: torch.Generator, *, p: float = 0.25, min_area: float = 0.02,
                   max_area: float = 1 / 3, min_aspect: float = 0.3, mode: str = "const",
                   attempts: int = 10) -> dict[str, torch.Tensor]:
    """Per-sample draws of ``random_erasing`` for a batch of ``shape`` (CPU tensors, fixed count of draws)."""
    B, H, W = shape[0], shape[-2], shape[-1]
    do = torch.rand(B, generator=generator, dtype=torch.float64) < p
    area = (min_area + (max_area - min_area) * torch.rand(B, attempts, generator=generator, dtype=torch.float64))
    aspect = torch.exp(math.log(min_aspect) * (1 - 2 * torch.rand(B, attempts, generator=generator,
                                                                  dtype=torch.float64)))
    h = torch.round(torch.sqrt(area * H * W * aspect))
    w = torch.round(torch.sqrt(area * H * W / aspect))
    ok = (h < H) & (w < W) & (h > 0) & (w > 0)
    first = ok.long().argmax(1, keepdim=True)  # timm keeps the first attempt that fits
    h, w = h.gather(1, first).squeeze(1), w.gather(1, first).squeeze(1)
    u = torch.rand(B, 2, generator=generator, dtype=torch.float64)
    do = do & ok.any(1)
    noise_shape = {"const": (0,), "rand": (B, shape[-3]), "pixel": tuple(shape)}
    if mode not in noise_shape:
        raise ValueError(f"random erasing mode must be const, rand or pixel, got {mode!r}")
    return {"erase": do, "top": torch.floor(u[:, 0] * (H - h + 1)), "left": torch.floor(u[:, 1] * (W - w + 1)),
            "h": torch.where(do, h, 0.0), "w": w, "noise": torch.randn(noise_shape[mode], generator=generator)}


def apply_erasing(x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Erase the boxes drawn by ``erasing_params``. x: ``[B, C, H, W]`` or ``[B, T, C, H, W]`` (same box per frame)."""
    B = x.shape[0]
    xs, ys = _pixel_grid(x.shape[-2], x.shape[-1], x.device)
    t, le, h, w = (params[k].to(device=x.device, dtype=torch.float32).reshape(-1, 1, 1)
                   for k in ("top", "left", "h", "w"))
    box = (ys >= t) & (ys < t + h) & (xs >= le) & (xs < le + w)  # [B, H, W]
    box = box.reshape(B, *([1] * (x.dim() - 3)), *x.shape[-2:])
    noise = params["noise"].to(device=x.device, dtype=x.dtype)
    if noise.numel() == 0:
        value = torch.zeros((), dtype=x.dtype, device=x.device)
    elif noise.dim() == 2:  # one value per channel
        value = noise.reshape(B, *([1] * (x.dim() - 4)), -1, 1, 1)
    else:
        value = noise
    return torch.where(box, value, x)


def random_erasing(x: torch.Tensor, generator: torch.Generator, **kwargs) -> torch.Tensor:
    """timm's ``RandomErasing`` (Zhong et al. 2017), per sample, on the *normalised* batch.

    With probability ``p`` (timm's default is 0.5; the Spikformer recipes use 0.25) one box is erased: area
    ``U(min_area, max_area)`` = U(0.02, 1/3) of the image, aspect ``exp(U(log 0.3, log 1/0.3))``, sides rounded,
    the first of 10 attempts that fits inside, position uniform. It becomes 0 (``mode="const"``, Spikformer's
    ``remode``), one normal value per channel (``"rand"``) or per pixel (``"pixel"``).
    x: ``[B, C, H, W]`` (or ``[B, T, C, H, W]``, the same box on every frame); kwargs: see ``erasing_params``.
    """
    return apply_erasing(x, erasing_params(x.shape, generator, **kwargs))
