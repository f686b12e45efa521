"""MST's data paths: the bundled static ``digits``, the ``mst_cifar`` policies (against Pillow, as torchvision
runs them) and event samples as stacked voxel-grid images (N-Digits and a tiny real-format CIFAR10-DVS)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from spikemask.data import (
    NDigits,
    dataset_info,
    ensure_ndigits,
    get_dataset,
    input_info,
    load_digit_images,
    make_events,
    ndigits_split,
)
from spikemask.data import augment as A
from spikemask.data.formats.aedat2 import dvs128_address, write_aedat2
from spikemask.data.representation import pad_to_square, voxel_image

# sklearn's digits per class, and N-Digits' test share round(0.2 n) of each
CLASS_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
TEST_COUNTS = [36, 36, 35, 37, 36, 36, 36, 36, 35, 36]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def source():
    """N-Digits' source images, labels and split, computed independently of the ``digits`` set."""
    images, labels = load_digit_images()
    return images, labels, ndigits_split(labels)


# ---------------------------------------------------------------- digits: the bundled static images
@pytest.mark.parametrize("split", ["train", "test"])
def test_digits_are_ndigits_source_images_with_its_split(source, split):
    images, labels, is_test = source
    ds = get_dataset("digits", split=split, T=4)
    want = np.flatnonzero(is_test if split == "test" else ~is_test)
    assert sorted(ds.indices.tolist()) == want.tolist() and len(ds) == want.size == (359 if split == "test" else 1438)
    assert np.array_equal(ds.images, images[ds.indices]) and np.array_equal(ds.labels, labels[ds.indices])
    expect = TEST_COUNTS if split == "test" else [n - t for n, t in zip(CLASS_COUNTS, TEST_COUNTS)]
    assert np.bincount(ds.labels, minlength=10).tolist() == expect
    for i in (0, len(ds) // 2, len(ds) - 1):
        x, y = ds[i]
        assert x.dtype == torch.float32 and x.shape == (1, 32, 32) and isinstance(y, int)
        assert torch.equal(x[0], torch.from_numpy(images[ds.indices[i]])) and y == labels[ds.indices[i]]
    assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0
    assert (ds.images[:, :4].max(), ds.images[:, :, :4].max()) == (0.0, 0.0)  # 24 x 24 centred on 32 x 32


def test_digits_are_in_ndigits_order(tmp_path, source):
    """digits[i] is the image N-Digits' sample i recorded (checked on a subset build)."""
    _, labels, is_test = source
    picks = sorted({int(i) for c in range(10) for i in np.flatnonzero(labels == c)[:3]})
    data = ensure_ndigits(tmp_path / "ndigits-v1", indices=picks)
    for split in ("train", "test"):
        nd = NDigits(data, split, T=1, cache_root=tmp_path / "cache")
        recorded = [int(Path(f).stem) for f in nd.files]
        order = [i for i in get_dataset("digits", split=split, T=1).indices.tolist() if i in set(picks)]
        assert recorded == order and nd.labels.tolist() == labels[order].tolist()
        assert all(is_test[i] == (split == "test") for i in recorded)


def test_digits_registry_size_and_refusals():
    info = dataset_info("digits")
    assert (info.kind, info.in_channels, info.sensor_size, info.num_classes) == ("images", 1, (32, 32), 10)
    assert input_info("digits") == info
    full = get_dataset("digits", split="test", T=1)
    small = get_dataset("digits", split="test", T=1, size=(16, 16), split_by="time", binarize=True)
    x, y = small[5]
    ref = F.interpolate(full[5][0][None], size=(16, 16), mode="bilinear", align_corners=False, antialias=True)[0]
    assert x.shape == (1, 16, 16) and y == full[5][1] and torch.equal(x, ref.clamp(0, 1))
    assert get_dataset("digits", split="train", T=1, size=[64, 48])[0][0].shape == (1, 64, 48)
    with pytest.raises(ValueError, match="data.size"):
        get_dataset("digits", split="train", T=1, size=(0, 32))
    with pytest.raises(ValueError, match="split must be one of train, test"):
        get_dataset("digits", split="val", T=1)
    with pytest.raises(ValueError, match="event sets only"):
        get_dataset("digits", split="train", T=1, representation="voxel")
    with pytest.raises(ValueError, match="event sets only"):
        input_info("digits", {"representation": "voxel"})


def test_digits_policy_shifts_by_at_most_two_pixels_and_never_flips():
    x = torch.rand(400, 1, 12, 12, generator=gen(1))
    out = A.get_augment("digits")(x, gen(2))
    padded = F.pad(x, (2, 2, 2, 2))
    seen = set()
    for b in range(400):
        hits = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                if torch.equal(out[b], padded[b, :, 2 - dy:14 - dy, 2 - dx:14 - dx])]
        assert len(hits) == 1, "each sample is one integer shift of its image, zero filled, unflipped"
        seen.add(hits[0])
    assert len(seen) == 25
    assert torch.equal(A.get_augment("digits")(x, gen(2)), out)


# ---------------------------------------------------------------- MST's CIFAR pipeline
def torchvision_reference(x8: np.ndarray, top: int | None, left: int | None, flip: bool) -> torch.Tensor:
    """What MST's torchvision transforms do to one uint8 ``[3, 32, 32]`` image, step by step with Pillow:
    RandomCrop(32, padding=4) (zero padding, crop at top/left) -> Resize(224) (PIL bilinear) -> flip ->
    ToTensor -> Normalize."""
    im = Image.fromarray(x8.transpose(1, 2, 0))
    if top is not None:
        im = ImageOps.expand(im, border=4, fill=0).crop((left, top, left + 32, top + 32))
    im = im.resize((224, 224), Image.BILINEAR)
    if flip:
        im = ImageOps.mirror(im)
    t = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float().div(255)
    return A.normalize(t, A.MST_CIFAR_MEAN, A.MST_CIFAR_STD)


def cifar_like(B: int, seed: int = 0) -> tuple[np.ndarray, torch.Tensor]:
    x8 = np.random.default_rng(seed).integers(0, 256, (B, 3, 32, 32), dtype=np.uint8)
    return x8, torch.from_numpy(x8).float().div(255)  # as the CIFAR set delivers them


def test_mst_cifar_is_torchvisions_crop_resize_flip_normalize():
    x8, x = cifar_like(6)
    pol = A.get_augment("mst_cifar")
    params = pol.sample(x.shape, gen(3))
    out = pol.apply(x, params)
    assert out.shape == (6, 3, 224, 224) and pol.output_size == (224, 224)
    for b in range(6):
        top, left = (int(v) + 4 for v in params["crop"][b])  # offsets into the padded 40 x 40 image
        ref = torchvision_reference(x8[b], top, left, bool(params["flip"][b]))
        torch.testing.assert_close(out[b], ref, rtol=0, atol=1e-5)
    many = pol.sample((2000, 3, 32, 32), gen(4))
    assert set(many["crop"].flatten().tolist()) == set(range(-4, 5)) and abs(many["flip"].double().mean() - 0.5) < 0.04


def test_mst_cifar_crop_padding_is_zeros():
    pol = A.get_augment("mst_cifar")
    x = torch.ones(1, 3, 32, 32)
    params = {"crop": torch.tensor([[-4.0, -4.0]]), "flip": torch.tensor([False])}  # the padded image's corner
    out = pol.apply(x, params)
    img = out * torch.tensor(A.MST_CIFAR_STD).reshape(3, 1, 1) + torch.tensor(A.MST_CIFAR_MEAN).reshape(3, 1, 1)
    # rows / columns 0-24 of 224 read only the 4 padding rows (source (r + 0.5) / 7 - 0.5 <= 3)
    assert torch.allclose(img[..., :25, :], torch.zeros(()), atol=1e-6)
    assert torch.allclose(img[..., :, :25], torch.zeros(()), atol=1e-6)
    assert (img[..., 25:, 25:] > 0).all() and torch.allclose(img[..., 32:, 32:], torch.ones(()), atol=1e-6)


def test_mst_cifar_is_replayable_per_generator():
    _, x = cifar_like(4, seed=1)
    pol = A.get_augment("mst_cifar")
    a, b, c = pol(x, gen(5)), pol(x, gen(5)), pol(x, gen(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="B, C, H, W"):
        pol(torch.zeros(2, 4, 3, 32, 32), gen())


def test_mst_cifar_eval_is_resize_and_normalize_without_randomness():
    x8, x = cifar_like(3, seed=2)
    ev = A.get_augment("mst_cifar_eval")
    out = ev(x)
    assert out.shape == (3, 3, 224, 224) and ev.output_size == (224, 224)
    assert torch.equal(ev(x, gen(0)), out) and torch.equal(ev(x, gen(1)), out)
    for b in range(3):
        torch.testing.assert_close(out[b], torchvision_reference(x8[b], None, None, False), rtol=0, atol=1e-5)
    assert ev(x.double()).dtype == torch.float64


# ---------------------------------------------------------------- events as a static voxel-grid image
def test_pad_to_square_and_voxel_image():
    frames = np.arange(2 * 2 * 3 * 5, dtype=np.uint8).reshape(2, 2, 3, 5)  # [bins, 2, H, W]
    x = voxel_image(frames)
    assert x.dtype == torch.float32 and x.shape == (4, 3, 5)
    assert torch.equal(x[3], torch.from_numpy(frames[1, 1]).float()), "channel 2 i + p: bin i, polarity p"
    sq = pad_to_square(x)
    assert sq.shape == (4, 5, 5) and torch.equal(sq[:, 1:4], x) and (sq[:, 0] == 0).all() and (sq[:, 4] == 0).all()
    assert pad_to_square(torch.ones(1, 4, 1)).squeeze(0)[:, 1].sum() == 4  # odd remainder: right side
    big = voxel_image(frames, (10, 10))
    ref = F.interpolate(sq[None], size=(10, 10), mode="bilinear", align_corners=False, antialias=True)[0]
    assert torch.equal(big, ref)
    same = np.ones((1, 2, 4, 4), dtype=np.uint8)
    assert torch.equal(voxel_image(same, (4, 4)), torch.ones(2, 4, 4)), "a square at its own size is untouched"


@pytest.fixture(scope="module")
def built(tmp_path_factory, source):
    """A small N-Digits subset build ``(data folder, cache folder)``."""
    _, labels, is_test = source
    picks = [int(i) for c in range(10) for test in (False, True)
             for i in np.flatnonzero((labels == c) & (is_test == test))[:2]]
    root = tmp_path_factory.mktemp("mst-ndigits")
    return ensure_ndigits(root / "ndigits-v1", indices=picks), root / "cache"


def test_ndigits_voxel_is_stacked_frames(built):
    data, cache = built
    frames = get_dataset("ndigits", split="train", T=3, root=data, cache_root=cache)
    voxel = get_dataset("ndigits", split="train", T=16, root=data, cache_root=cache, representation="voxel", bins=3)
    assert len(voxel) == len(frames) and np.array_equal(voxel.labels, frames.labels)
    for i in range(len(voxel)):
        x, y = voxel[i]
        assert x.dtype == torch.float32 and x.shape == (6, 32, 32) and y == frames[i][1]
        assert torch.equal(x, frames[i][0].reshape(6, 32, 32))
    # T does not matter to a voxel grid; bins and the representation are in the cache's key and name
    again = NDigits(data, "train", T=2, cache_root=cache, representation="voxel", bins=3)
    assert again.cache_file == voxel.cache_file != frames.cache_file and "voxel3" in voxel.cache_file.name
    assert '"representation": "voxel"' in voxel._key and "representation" not in frames._key
    assert NDigits(data, "train", T=2, cache_root=cache, representation="voxel", bins=4).cache_file != voxel.cache_file
    default = NDigits(data, "test", T=2, cache_root=cache, representation="voxel")
    assert default[0][0].shape == (18, 32, 32)  # MST's 9 bins


def test_ndigits_voxel_size_resizes_the_image(built):
    data, cache = built
    native = NDigits(data, "test", T=1, cache_root=cache, representation="voxel", bins=2)
    big = NDigits(data, "test", T=1, cache_root=cache, representation="voxel", bins=2, size=(48, 48))
    assert big.cache_file == native.cache_file, "framed at the sensor size, resized when read"
    x = big[0][0]
    ref = F.interpolate(native[0][0][None], size=(48, 48), mode="bilinear", align_corners=False, antialias=True)[0]
    assert x.shape == (4, 48, 48) and torch.equal(x, ref)
    with pytest.raises(ValueError, match="representation must be one of frames, voxel"):
        NDigits(data, "test", T=1, cache_root=cache, representation="voxels")
    with pytest.raises(ValueError, match="bins must be a positive integer"):
        NDigits(data, "test", T=1, cache_root=cache, representation="voxel", bins=0)


def write_tiny_cifar10dvs(root: Path, per_class: int = 2, n: int = 60) -> None:
    """``per_class`` AEDAT 2.0 recordings per class, written as the figshare files are."""
    for c, name in enumerate(dataset_info("cifar10dvs").class_names):
        for i in range(per_class):
            rng = np.random.default_rng(100 * c + i)
            ev = make_events(np.sort(rng.integers(0, 200_000, n)), rng.integers(0, 128, n), rng.integers(0, 128, n),
                             rng.integers(0, 2, n))
            addr = dvs128_address(127 - ev["y"], 127 - ev["x"], 1 - ev["p"])  # the reader transposes and flips
            write_aedat2(root / name / f"cifar10_{name}_{i}.aedat", addr, ev["t"].astype(np.uint32))


@pytest.mark.parametrize("split_by", ["number", "time"])
def test_cifar10dvs_voxel_grid(tmp_path, monkeypatch, split_by):
    monkeypatch.setenv("SPIKEMASK_DATA", str(tmp_path / "data"))
    root = tmp_path / "cifar10dvs"
    write_tiny_cifar10dvs(root)
    frames = get_dataset("cifar10dvs", split="train", T=3, root=root, split_by=split_by)
    voxel = get_dataset("cifar10dvs", split="train", T=64, root=root, split_by=split_by, representation="voxel",
                        bins=3)
    mst = get_dataset("cifar10dvs", split="train", T=64, root=root, split_by=split_by, representation="voxel",
                      bins=3, size=(224, 224))
    assert len(voxel) == len(frames) == 20
    for i in (0, 7, 19):
        x, y = voxel[i]
        assert x.shape == (6, 128, 128) and y == frames[i][1] and torch.equal(x, frames[i][0].reshape(6, 128, 128))
        assert x.sum() == 60
        z = mst[i][0]
        ref = F.interpolate(x[None], size=(224, 224), mode="bilinear", align_corners=False, antialias=True)[0]
        assert z.shape == (6, 224, 224) and torch.equal(z, ref)
    assert voxel.cache.key["representation"] == "voxel" and voxel.cache.key["bins"] == 3
    assert "representation" not in frames.cache.key and voxel.cache.path != frames.cache.path
    assert mst.cache.path == voxel.cache.path and "voxel3" in voxel.cache.path.name
    info = input_info("cifar10dvs", {"representation": "voxel", "bins": 9})
    assert (info.kind, info.in_channels, info.sensor_size) == ("images", 18, (128, 128))
    assert input_info("cifar10dvs", {"protocol": "tebn"}) == dataset_info("cifar10dvs")
    with pytest.raises(ValueError, match="representation must be one of"):
        input_info("cifar10dvs", {"representation": "grid"})
