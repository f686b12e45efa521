"""Batch augmentation (spikemask.data.augment / randaugment) against independent computations:
torch.rot90 / torch.roll / slicing / explicit per-pixel loops, and Pillow for the RandAugment pixel ops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spikemask.data import augment as A
from spikemask.data import randaugment as RA

RESIZING = ["mst_cifar", "mst_cifar_eval"]  # change the image size: tested in test_data_mst.py
POLICIES = sorted(set(A.AUGMENTATIONS) - set(RESIZING))
EVENT_POLICIES = ["flip", "spikformer_event", "nda"]
IMAGE_POLICIES = ["cifar", "spikformer_cifar", "imagenet"]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ids(B: int, H: int, W: int, T: int = 1, C: int = 1) -> torch.Tensor:
    """A clip whose every pixel holds a distinct positive id, identical over T and C: ``[B, T, C, H, W]``."""
    frame = torch.arange(1, H * W + 1, dtype=torch.float32).reshape(H, W)
    return frame.expand(B, T, C, H, W).clone()


def counts(B=6, T=3, H=20, W=24, seed=0) -> torch.Tensor:
    return torch.poisson(torch.full((B, T, 2, H, W), 1.5), generator=gen(seed))


def images(B=8, H=16, W=16, seed=0) -> torch.Tensor:
    return torch.randint(0, 256, (B, 3, H, W), generator=gen(seed)).float() / 255


def in_set(values: torch.Tensor, allowed: torch.Tensor) -> bool:
    return bool(((values[:, None] - allowed[None]).abs().min(1).values < 1e-9).all())


def no_duplicates(out: torch.Tensor) -> bool:
    """Every nonzero id of each sample occurs at most once per frame: no pixel was copied twice."""
    for frame in out.reshape(-1, *out.shape[-2:]):
        v = frame[frame > 0]
        if v.unique().numel() != v.numel():
            return False
    return True


# ---------------------------------------------------------------- geometric primitives
def test_hflip_is_flip_of_width_axis():
    x = counts()
    assert torch.equal(A.hflip(x), x.flip(-1))
    mask = torch.tensor([True, False, True, False, False, True])
    out = A.hflip(x, mask)
    for b in range(6):
        assert torch.equal(out[b], x[b].flip(-1) if mask[b] else x[b])


@pytest.mark.parametrize("size", [6, 7])
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_rotation_by_quarter_turns_is_rot90(size, mode):
    x = ids(4, size, size)[:, 0]  # [4, 1, N, N]
    angles = torch.tensor([90.0, -90.0, 180.0, 270.0])  # counter-clockwise positive
    out = A.rotate(x, angles, mode=mode)
    for b, k in enumerate([1, -1, 2, 3]):
        torch.testing.assert_close(out[b], torch.rot90(x[b], k, dims=(-2, -1)), atol=1e-4, rtol=0)


def test_nearest_rotation_moves_each_pixel_close_to_its_exact_place():
    H, W = 21, 26
    angles = torch.linspace(-175, 175, 15, dtype=torch.float64)
    out = A.rotate(ids(15, H, W)[:, 0], angles)[:, 0]  # ids of the source pixel each output pixel holds
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    for b in range(15):
        th = math.radians(angles[b])  # backward map of a counter-clockwise rotation about ((W-1)/2, (H-1)/2)
        ex = math.cos(th) * (xs - (W - 1) / 2) - math.sin(th) * (ys - (H - 1) / 2) + (W - 1) / 2
        ey = math.sin(th) * (xs - (W - 1) / 2) + math.cos(th) * (ys - (H - 1) / 2) + (H - 1) / 2
        got = out[b] > 0
        src = out[b][got].long() - 1
        err = torch.hypot(src % W - ex[got], src // W - ey[got])
        assert err.max() < 2.0 and err.mean() < 0.8  # three roundings (nearest sampling: 0.71 / 0.38)
        inside = (ex.round() >= 0) & (ex.round() < W) & (ey.round() >= 0) & (ey.round() < H)
        assert abs(got.sum().item() - inside.sum().item()) <= 0.05 * H * W  # few pixels lost beyond the corners


@pytest.mark.parametrize("dx,dy", [(3, 0), (0, -2), (-4, 5), (2, 2)])
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_integer_translation_is_slicing_with_zero_fill(dx, dy, mode):
    x = counts(B=2, H=9, W=11)
    H, W = x.shape[-2:]
    ref = torch.zeros_like(x)
    ref[..., max(dy, 0):H + min(dy, 0), max(dx, 0):W + min(dx, 0)] = \
        x[..., max(-dy, 0):H - max(dy, 0), max(-dx, 0):W - max(dx, 0)]
    torch.testing.assert_close(A.translate(x, dx, dy, mode=mode), ref, atol=1e-5, rtol=0)


def test_roll_is_torch_roll_per_sample():
    x = counts(B=4)
    dx, dy = torch.tensor([3, -5, 0, 30]), torch.tensor([-1, 4, 0, -22])
    out = A.roll(x, dx, dy)
    for b in range(4):
        assert torch.equal(out[b], torch.roll(x[b], (int(dy[b]), int(dx[b])), dims=(-2, -1)))
    assert torch.equal(out.sum(dim=(-2, -1)), x.sum(dim=(-2, -1)))


@pytest.mark.parametrize("factor", [0.3, -0.577, 1.2])
def test_shear_matches_per_pixel_loops(factor):
    H, W = 7, 10
    rng = np.random.default_rng(0)
    img = rng.random((H, W))
    x = torch.tensor(img).reshape(1, 1, H, W)
    cy, cx = (H - 1) / 2, (W - 1) / 2
    near_x, near_y, lin_x = np.zeros((H, W)), np.zeros((H, W)), np.zeros((H, W))
    for y in range(H):
        for xx in range(W):
            s = xx + math.floor(factor * (y - cy) + 0.5)  # whole-pixel row shift, about the centre
            near_x[y, xx] = img[y, s] if 0 <= s < W else 0.0
            t = y + math.floor(factor * (xx - cx) + 0.5)
            near_y[y, xx] = img[t, xx] if 0 <= t < H else 0.0
            u = xx + factor * (y - cy)  # bilinear between the two neighbours, zero outside
            x0 = math.floor(u)
            for xi, wgt in ((x0, 1 - (u - x0)), (x0 + 1, u - x0)):
                if 0 <= xi < W:
                    lin_x[y, xx] += wgt * img[y, xi]
    np.testing.assert_allclose(A.shear(x, factor)[0, 0].numpy(), near_x, atol=1e-12)
    np.testing.assert_allclose(A.shear(x, factor, axis="y")[0, 0].numpy(), near_y, atol=1e-12)
    np.testing.assert_allclose(A.shear(x, factor, mode="bilinear")[0, 0].numpy(), lin_x, atol=1e-5)


def test_randaugment_shear_is_about_the_top_edge_as_pil():
    """timm/PIL ``(1, f, 0, 0, 1, 0)`` on pixel centres: output (x, y) reads x + f (y + 1/2), bilinear, fill."""
    H, W, f, fill = 6, 9, 0.27, 0.4
    img = np.random.default_rng(1).random((H, W))
    ref = np.zeros((H, W))
    for y in range(H):
        for xx in range(W):
            u = xx + f * (y + 0.5)
            x0 = math.floor(u)
            pairs = ((x0, 1 - u + x0), (x0 + 1, u - x0))
            ref[y, xx] = sum(w * (img[y, xi] if 0 <= xi < W else fill) for xi, w in pairs)
    out = RA.ra_shear(torch.tensor(img).reshape(1, 1, H, W), f, fill=fill)
    np.testing.assert_allclose(out[0, 0].numpy(), ref, atol=1e-5)


# ---------------------------------------------------------------- counts stay counts
def test_nearest_ops_on_counts_keep_integers_and_never_create_counts():
    x = counts(B=8, H=23, W=30)
    B = x.shape[0]
    g = gen(3)
    outs = {
        "rotate": A.rotate(x, torch.rand(B, generator=g) * 360 - 180),
        "shear_x": A.shear(x, torch.rand(B, generator=g) * 1.2 - 0.6),
        "shear_y": A.shear(x, torch.rand(B, generator=g) * 1.2 - 0.6, axis="y"),
        "translate": A.translate(x, torch.rand(B, generator=g) * 14 - 7, torch.rand(B, generator=g) * 14 - 7),
    }
    outs.update({name: A.get_augment(name)(x, gen(4)) for name in EVENT_POLICIES})
    for name, out in outs.items():
        assert torch.equal(out, out.round()), name
        assert (out >= 0).all(), name
        assert (out.sum(dim=(-2, -1)) <= x.sum(dim=(-2, -1))).all(), name
    # the stronger property: the ops are permutations of pixels, so a pixel id never appears twice
    u = ids(16, 23, 30)
    angles = torch.linspace(-180, 180, 16)
    assert no_duplicates(A.rotate(u, angles)), "rotate"
    assert no_duplicates(A.shear(u, torch.linspace(-1, 1, 16))), "shear"
    for name in EVENT_POLICIES:
        assert no_duplicates(A.get_augment(name)(u, gen(5))), name


def test_flip_roll_and_inner_translation_preserve_counts_exactly():
    x = torch.zeros(4, 3, 2, 20, 20)
    x[..., 6:14, 5:15] = counts(B=4, H=8, W=10)[:, :, :, :, :]  # 5 px clear margin all round
    total = x.sum(dim=(-2, -1))
    assert torch.equal(A.hflip(x).sum(dim=(-2, -1)), total)
    assert torch.equal(A.roll(x, torch.tensor([7, -9, 0, 19]), torch.tensor([3, 3, -11, 0])).sum(dim=(-2, -1)), total)
    assert torch.equal(A.translate(x, torch.tensor([5, -5, 2, 0]), torch.tensor([-5, 4, 5, -3])).sum(dim=(-2, -1)),
                       total)


# ---------------------------------------------------------------- per-sample, per-clip, replay
@pytest.mark.parametrize("name", EVENT_POLICIES)
def test_every_frame_of_a_clip_gets_the_same_transform(name):
    frame = counts(B=32, T=1)
    clip = frame.expand(32, 5, 2, *frame.shape[-2:]).clone()
    out = A.get_augment(name)(clip, gen(7))
    for t in range(1, 5):
        assert torch.equal(out[:, t], out[:, 0])
    # and a single frame [B, C, H, W] drawn with the same seed gets that same transform
    assert torch.equal(A.get_augment(name)(frame[:, 0], gen(7)), out[:, 0])


@pytest.mark.parametrize("name", EVENT_POLICIES + IMAGE_POLICIES)
def test_samples_of_a_batch_are_augmented_differently(name):
    x = images(B=16) if name in IMAGE_POLICIES else counts(B=16, T=1)
    same = x[:1].expand_as(x).clone()
    out = A.get_augment(name)(same, gen(8))
    distinct = {tuple(o.flatten().tolist()) for o in out}
    assert len(distinct) >= (2 if name == "flip" else 5)  # a flip has only two outcomes


def test_spikformer_event_parameters_stay_in_their_ranges():
    pol = A.SpikformerEventAugment()
    H = W = 64
    p = pol.sample((6000, 2, 2, H, W), gen(9))
    assert abs(p["flip"].double().mean() - 0.5) < 0.03
    freq = torch.bincount(p["op"], minlength=6).double() / 6000
    assert (freq - 1 / 6).abs().max() < 0.025
    levels = torch.linspace(-1, 1, 31, dtype=torch.float64)  # the 31 bins of linspace(-v, v, 31)
    sh = p["shear_x"][p["op"] == 1]
    assert in_set(sh, torch.tan(0.3 * levels)) and torch.round(sh * 1e9).unique().numel() == 31
    for key, op in (("dx", 2), ("dy", 3)):
        d = p[key][p["op"] == op]
        assert set(d.unique().tolist()) == set(range(-5, 6))
        assert (p[key][p["op"] != op] == 0).all()
    ang = p["angle"][p["op"] == 4]
    assert in_set(ang, 30 * levels) and ang.abs().max() == 30 and torch.round(ang * 1e9).unique().numel() == 31
    side = p["cut_size"][p["op"] == 5]
    frac = side**2 / (H * W)
    assert frac.min() >= 0.001 and frac.max() <= 0.11 and side.unique().numel() > 10
    assert ((p["cut_top"] >= 0) & (p["cut_top"] + p["cut_size"] <= H)).all()
    assert (p["shear_y"] == 0).all()
    assert set(A.SpikformerEventAugment(shear_y=True).sample((500, 1, H, W), gen(0))["op"].unique().tolist()) \
        == set(range(7))


def test_nda_parameters_stay_in_their_ranges():
    p = A.NDAAugment().sample((6000, 2, 2, 48, 48), gen(10))
    freq = torch.bincount(p["op"], minlength=3).double() / 6000
    assert (freq - 1 / 3).abs().max() < 0.03
    assert not p["flip"].any()
    for key in ("roll_dx", "roll_dy"):
        assert set(p[key][p["op"] == 0].unique().tolist()) == set(range(-5, 6))
    ang = p["angle"][p["op"] == 1]
    assert ang.abs().max() <= 30 and ang.abs().max() > 29 and ang.unique().numel() > 1000
    sh = p["shear_x"][p["op"] == 2]
    assert sh.abs().max() <= math.tan(math.radians(30)) + 1e-12 and sh.abs().max() > 0.55


def test_cutout_area_is_between_0_1_and_11_percent_of_the_frame():
    H, W = 32, 40
    pol = A.SpikformerEventAugment(flip_p=0.0)
    x = torch.ones(3000, 1, 1, H, W)
    params = pol.sample(x.shape, gen(11))
    out = pol.apply(x, params)
    cut = params["op"] == 5
    holes = (out == 0).flatten(1).sum(1).double() / (H * W)
    assert (holes[cut] >= 0.001).all() and (holes[cut] <= 0.11).all() and holes[cut].std() > 0
    zero = out[cut, 0, 0] == 0  # a square: its bounding box is all zeros
    rows, cols = zero.any(2).sum(1), zero.any(1).sum(1)
    assert torch.equal(rows, cols) and torch.equal(rows * cols, zero.flatten(1).sum(1))


@pytest.mark.parametrize("name", POLICIES)
def test_same_seed_replays_and_another_seed_differs(name):
    x = images(B=12) if name in IMAGE_POLICIES + ["cifar_eval", "imagenet_eval"] else counts(B=12)
    pol = A.get_augment(name)
    a, b, c = pol(x, gen(1)), pol(x, gen(1)), pol(x, gen(2))
    assert torch.equal(a, b)
    if name in EVENT_POLICIES + IMAGE_POLICIES:
        assert not torch.equal(a, c)


@pytest.mark.parametrize("name", POLICIES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_device_and_dtype_are_preserved(name, dtype):
    x = (images(B=4) if name in IMAGE_POLICIES + ["cifar_eval", "imagenet_eval"] else counts(B=4)).to(dtype)
    out = A.get_augment(name)(x, gen(0))
    assert out.dtype == dtype and out.device == x.device and out.shape == x.shape


def test_bad_inputs_are_refused_with_the_shape_or_names():
    with pytest.raises(ValueError, match=r"\(2, 3, 4\)"):
        A.get_augment("spikformer_event")(torch.zeros(2, 3, 4), gen())
    with pytest.raises(ValueError, match="B, C, H, W"):
        A.get_augment("cifar")(torch.zeros(2, 4, 3, 8, 8), gen())
    with pytest.raises(ValueError, match="CPU torch.Generator"):
        A.get_augment("nda")(counts(B=1), None)
    with pytest.raises(ValueError, match="Did you mean 'nda'") as err:
        A.get_augment("nd")
    for name in POLICIES:
        assert name in str(err.value)


# ---------------------------------------------------------------- normalisation, erasing, image policies
def test_normalize_is_the_formula():
    x = images(B=2)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    out = A.normalize(x, mean, std)
    for c in range(3):
        torch.testing.assert_close(out[:, c], (x[:, c] - mean[c]) / std[c])
    torch.testing.assert_close(A.get_augment("cifar_eval")(x), A.normalize(x, A.CIFAR10_MEAN, A.CIFAR10_STD))


def test_random_erasing_hits_with_probability_p_and_erases_one_box():
    x = torch.ones(4000, 2, 3, 16, 20)  # a clip: the same box on every frame
    out = A.random_erasing(x, gen(12), p=0.25)
    hit = (out == 0).flatten(1).any(1)
    assert abs(hit.double().mean().item() - 0.25) < 0.025
    zero = out[hit, 0, 0] == 0
    assert all(torch.equal(out[hit, t] == 0, out[hit, 0, :1].expand(-1, 3, -1, -1) == 0) for t in range(2))
    rows, cols = zero.any(2).sum(1), zero.any(1).sum(1)
    assert torch.equal(rows * cols, zero.flatten(1).sum(1))  # one solid rectangle
    frac = zero.flatten(1).sum(1).double() / (16 * 20)
    assert frac.min() >= 0.02 * 0.6 and frac.max() <= 1 / 3 * 1.4  # U(2 %, 33 %) up to rounding of the sides
    noisy = A.random_erasing(torch.ones(400, 3, 16, 20), gen(12), p=1.0, mode="pixel")
    assert ((noisy != 1).flatten(1).any(1)).all()


def test_image_policy_crop_and_flip_are_padding_and_mirroring():
    pol = A.ImagePolicy(mean=(0.0,) * 3, std=(1.0,) * 3, crop_padding=4, flip_p=0.5)
    x = images(B=64, H=12, W=12)
    params = pol.sample(x.shape, gen(13))
    out = pol.apply(x, params)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for b in range(64):
        oy, ox = (int(v) + 4 for v in params["crop"][b])
        ref = padded[b, :, oy:oy + 12, ox:ox + 12]
        assert torch.equal(out[b], ref.flip(-1) if params["flip"][b] else ref)
    assert params["crop"].min() == -4 and params["crop"].max() == 4


# ---------------------------------------------------------------- RandAugment
def test_level_to_arg_matches_timms_formulas_at_m9():
    m, plus, minus = torch.tensor([9.0]), torch.tensor([1.0]), torch.tensor([-1.0])
    expect = {  # timm: level/10 * range, int() for the integer ones
        "Rotate": 27.0, "ShearX": 0.27, "TranslateXRel": 0.405, "Posterize": 3, "PosterizeIncreasing": 1,
        "Solarize": 230, "SolarizeIncreasing": 26, "SolarizeAdd": 99, "Color": 1.72, "SharpnessIncreasing": 1.81,
    }
    for name, value in expect.items():
        assert RA.level_to_arg(name, m, plus).item() == pytest.approx(value)
    assert RA.level_to_arg("Rotate", m, minus).item() == pytest.approx(-27.0)
    assert RA.level_to_arg("ContrastIncreasing", m, minus).item() == pytest.approx(0.19)
    assert RA.level_to_arg("Equalize", m, plus) is None


def test_randaugment_draws_per_sample_within_range():
    ra = RA.RandAugment(RA.TIMM_OPS, num_ops=2, magnitude=9, magnitude_std=0.4)
    p = ra.sample(8000, gen(14))
    assert abs(p["apply"].double().mean() - 0.5) < 0.02
    freq = torch.bincount(p["op"].flatten(), minlength=15).double() / p["op"].numel()
    assert (freq - 1 / 15).abs().max() < 0.01
    assert p["magnitude"].min() >= 0 and p["magnitude"].max() <= 10
    assert abs(p["magnitude"].mean() - 9) < 0.02 and abs(p["magnitude"].std() - 0.4) < 0.02
    assert set(p["sign"].unique().tolist()) == {-1.0, 1.0}


def test_randaugment_batched_equals_one_sample_at_a_time():
    ra = RA.RandAugment(RA.TIMM_OPS, num_ops=2, magnitude=9, magnitude_std=0.5, prob=0.9, fill=(0.5, 0.4, 0.3))
    x = images(B=24)
    params = ra.sample(24, gen(15))
    out = ra.apply(x, params)
    for b in range(24):
        one = ra.apply(x[b:b + 1], {k: v[:, b:b + 1] for k, v in params.items()})
        torch.testing.assert_close(out[b:b + 1], one, atol=1e-6, rtol=0)
    assert out.min() >= 0 and out.max() <= 1


def test_randaugment_rotate_quarter_turn_is_rot90():
    x = images(B=1, H=8, W=8)
    torch.testing.assert_close(RA.ra_rotate(x, 90.0), torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5, rtol=0)


def test_solarize_add_is_timms_lookup_table():
    x = torch.arange(256, dtype=torch.float64).reshape(1, 1, 16, 16) / 255
    lut = torch.tensor([min(255, i + 99) if i < 128 else i for i in range(256)], dtype=torch.float64) / 255
    torch.testing.assert_close(RA.solarize_add(x, 99), lut.reshape(1, 1, 16, 16))


PIL_CASES = {  # op: arguments tried (the RandAugment values at m 9, both variants, and a few more)
    "autocontrast": [None], "equalize": [None], "invert": [None], "posterize": [1, 3, 4, 8],
    "solarize": [0, 26, 128, 230], "color": [0.1, 0.19, 0.6, 1.0, 1.72, 1.9], "contrast": [0.1, 0.19, 1.72, 1.9],
    "brightness": [0.1, 0.6, 1.72, 1.9], "sharpness": [0.1, 0.19, 1.72, 1.9],
}


@pytest.mark.parametrize("name", sorted(PIL_CASES))
def test_pixel_ops_match_pillow(name):
    Image = pytest.importorskip("PIL.Image", reason="Pillow is needed for the reference checks")
    from PIL import ImageEnhance, ImageOps

    pil = {
        "autocontrast": lambda im, a: ImageOps.autocontrast(im), "equalize": lambda im, a: ImageOps.equalize(im),
        "invert": lambda im, a: ImageOps.invert(im), "posterize": ImageOps.posterize, "solarize": ImageOps.solarize,
        "color": lambda im, a: ImageEnhance.Color(im).enhance(a),
        "contrast": lambda im, a: ImageEnhance.Contrast(im).enhance(a),
        "brightness": lambda im, a: ImageEnhance.Brightness(im).enhance(a),
        "sharpness": lambda im, a: ImageEnhance.Sharpness(im).enhance(a),
    }[name]
    ours = {"autocontrast": RA.auto_contrast, "equalize": RA.equalize, "invert": RA.invert}.get(name) or \
        getattr(RA, name)
    rng = np.random.default_rng(16)
    arrays = [rng.integers(0, 256, (9, 13, 3), dtype=np.uint8), rng.integers(60, 140, (9, 13, 3), dtype=np.uint8),
              np.full((9, 13, 3), 77, dtype=np.uint8)]
    x = torch.stack([torch.from_numpy(a).permute(2, 0, 1) for a in arrays]).double() / 255  # [3, 3, 9, 13]
    for arg in PIL_CASES[name]:
        out = ours(x) if arg is None else ours(x, torch.full((3,), float(arg)))
        for b, a in enumerate(arrays):
            ref = torch.from_numpy(np.asarray(pil(Image.fromarray(a), arg)).copy()).permute(2, 0, 1).double() / 255
            # Pillow truncates its blends to uint8; ours stays float: at most one level apart
            torch.testing.assert_close(out[b], ref, atol=1 / 255 + 1e-9, rtol=0, msg=f"{name}({arg}), image {b}")
