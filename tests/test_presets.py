"""Every packaged preset loads, resolves its model, and fits its data set (no data needed)."""

from __future__ import annotations

import pytest
import torch

import spikemask as sm
from spikemask.data import dataset_info
from spikemask.study import load_study_config
from spikemask.train import list_presets, load_run_config
from spikemask.train.loop import build_model_for

STUDIES = {"demo_ndigits", "compare_ndigits", "mst_digits"}
RUNS = [p for p in list_presets() if p not in STUDIES]


def test_the_paper_settings_are_all_there():
    assert {"spikformer_cifar10dvs", "spikformer_dvs128", "spikformer_cifar10", "spikformer_cifar100",
            "spikformer_imagenet", "masked_spikformer_cifar10dvs", "masked_spikformer_dvs128",
            "spikformer_ndigits"} <= set(RUNS)
    for family in ("spikingformer", "saformer"):
        assert {f"{family}_{d}" for d in ("cifar10dvs", "dvs128", "cifar10", "cifar100")} <= set(RUNS)


@pytest.mark.parametrize("name", RUNS)
def test_run_preset_resolves_and_fits_its_data(name):
    cfg = load_run_config(name)
    with torch.device("meta"):
        model = build_model_for(cfg)  # raises if the model's input does not fit the data set
    info = dataset_info(cfg.data.name)
    assert model.config.num_classes == info.num_classes
    if info.kind == "images":
        assert cfg.data.eval_transform != "none", "image sets are normalised at evaluation too"
    if cfg.data.augment != "none" or cfg.data.eval_transform != "none":
        from spikemask.data.augment import get_augment

        get_augment(cfg.data.augment), get_augment(cfg.data.eval_transform)


def test_masked_presets_mask_in_training_and_inference():
    for name in ("masked_spikformer_cifar10dvs", "masked_spikformer_dvs128"):
        mask = load_run_config(name).model["mask"]
        assert mask["ratio"] > 0 and mask["mode"] == "always"


def test_the_demo_study_preset():
    study = load_study_config("demo_ndigits")
    assert study.kind == "sweep" and study.grid == {"model.T": [4, 8], "model.mask.ratio": [0.0, 0.2, 0.5, 0.7]}
    assert study.eval_ratios == (0.2, 0.5, 0.7) and study.blocks_eval and study.probes
    from spikemask.results.sweep import Sweep

    assert len(Sweep(study).runs) == 8  # every cell a valid, distinct run


def test_the_comparison_study_preset():
    study = load_study_config("compare_ndigits")
    assert [m.split("_")[0] for m in study.models] == ["spikformer", "spikingformer", "saformer"]
    sizes = set()
    for name in study.models:
        with torch.device("meta"):
            c = sm.create_model(name).config
        sizes.add((c.embed_dim, c.depth, c.num_heads, c.img_size, c.grid))
    assert len(sizes) == 1 and study.time_steps == (8,) and study.ratios == (0.0, 0.5)


def test_the_mst_presets():
    for name in ("mst_cifar10", "mst_cifar100", "mst_imagenet", "mst_cifar10dvs", "resnet18_qcfs_cifar10",
                 "vgg16_qcfs_cifar10", "mst_ndigits"):
        assert name in RUNS
    study = load_study_config("mst_digits")
    assert study.kind == "conversion" and study.models == ("swin_small_digits", "resnet_small_digits")
    assert load_run_config("mst_cifar100").model["num_classes"] == 100
