"""``spikemask demo --config mst_digits`` in miniature: train a QCFS ANN on the bundled digits, convert it,
mask it at inference, fine-tune it masked with and without distillation; outputs, reuse, and the numbers
against a direct recomputation."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from spikemask.cli.main import main
from spikemask.conversion import convert
from spikemask.conversion.evaluate import accuracy_per_step
from spikemask.train import data as train_data
from spikemask.train import load_model
from spikemask.train.augment import batch_transform
from spikemask.train.config import DataConfig

STUDY = {
    "kind": "conversion", "name": "mst", "models": ["test_resnet"], "T": 4, "T_eval": 3, "ratios": [0.5],
    "mask_seeds": 2, "energy_samples": 4, "finetune_ratio": 0.5, "finetune_epochs": 1, "finetune_lr": 1e-3,
    "base": {"seed": 0, "data": {"name": "digits", "batch_size": 64, "eval_batch_size": 128, "augment": "digits"},
             "optim": {"lr": 5e-3}, "schedule": {"epochs": 1, "warmup_epochs": 0, "cooldown_epochs": 0},
             "train": {"mixup_prob": 0.0, "mixup_off_epoch": None, "eval_every": 100, "max_train_batches": 4,
                       "eval_mask_seeds": 1}},
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("mst")
    (root / "study.yaml").write_text(yaml.safe_dump(STUDY))
    assert main(["-q", "demo", "--config", str(root / "study.yaml"), "--out", str(root)]) == 0
    return root / "mst"


def test_outputs_and_structure(study):
    res = json.loads((study / "results.json").read_text())
    m = res["models"]["test_resnet"]
    assert m["family"] == "resnet" and len(m["curve"]["acc"]) == 4 and 0 <= m["ann_acc"] <= 100
    sweep = {(r["group"], r["ratio"]): r for r in m["masking"]}
    assert set(sweep) == {("convolutions", 0.0), ("convolutions", 0.5)}
    assert sweep["convolutions", 0.0]["acc"] == m["curve"]["acc"][2]  # τ = 0 at T_eval is the curve's step 3
    assert len(sweep["convolutions", 0.5]["per_seed"]) == 2
    e0, e5 = sweep["convolutions", 0.0]["energy"], sweep["convolutions", 0.5]["energy"]
    assert e0["mask_draws"] == 0 < e5["mask_draws"] and e5["mst_power_alpha"] == pytest.approx(e5["spikes"] / 1e-3)
    assert set(res["finetune"]) == {"masked, no fine-tuning", "fine-tuned masked", "fine-tuned masked, distilled"}
    assert all(r["ratio"] == 0.5 and r["T"] == 3 for r in res["finetune"].values())
    for png in ("accuracy_vs_T.png", "accuracy_vs_ratio.png"):
        assert (study / png).stat().st_size > 1000
    distilled = yaml.safe_load((study / "test_resnet_distilled" / "config.yaml").read_text())
    assert distilled["train"]["distill"]["teacher"].endswith("test_resnet_ann/last.pt")
    assert distilled["train"]["init_from"].endswith("test_resnet_ann/last.pt")
    assert distilled["model"]["mask"]["ratio"] == 0.5


def test_the_curve_is_what_a_direct_conversion_gives(study):
    res = json.loads((study / "results.json").read_text())["models"]["test_resnet"]
    ann, _ = load_model(study / "test_resnet_ann" / "last.pt")
    data = DataConfig(name="digits", eval_batch_size=128)
    curve = accuracy_per_step(convert(ann, 4), train_data.test_loader(data, 1, 128), T=4, ann=ann,
                              transform=batch_transform(data.eval_transform))
    assert curve["acc"] == pytest.approx(res["curve"]["acc"]) and curve["ann_acc"] == pytest.approx(res["ann_acc"])


def test_a_rerun_reuses_every_trained_model(study, capsys):
    stamps = {p: p.stat().st_mtime_ns for p in study.glob("*/last.pt")}
    assert len(stamps) == 3  # the ANN, the fine-tuned and the distilled model
    torch.manual_seed(123)  # the study seeds itself: global state must not matter
    assert main(["-q", "demo", "--config", str(study / "study.yaml"), "--out", str(study.parent)]) == 0
    assert {p: p.stat().st_mtime_ns for p in study.glob("*/last.pt")} == stamps
