"""``spikemask convert`` as a user runs it: the curve, plot, energy and converted checkpoint it writes, and
the checkpoints and arguments it refuses (with nothing written)."""

from __future__ import annotations

import csv
import json

import pytest
import torch

import spikemask as sm
from spikemask.cli.main import main
from spikemask.conversion import StepIF
from spikemask.train import load_model, save_checkpoint

DIGITS = {"data": {"name": "digits"}}


@pytest.fixture
def ann_ckpt(tmp_path):
    torch.manual_seed(0)
    model = sm.create_model("test_resnet", mask={"ratio": 0.3, "seed": 1})
    return save_checkpoint(tmp_path / "ann" / "last.pt", model, run_config=DIGITS)


def test_convert_writes_the_curve_the_energy_and_an_snn_that_evaluates_as_saved(ann_ckpt, tmp_path, capsys):
    out = tmp_path / "conv"
    assert main(["convert", str(ann_ckpt), "--T", "5", "--samples", "24", "--seeds", "2", "--energy-samples", "4",
                 "--batch-size", "8", "--out", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    curve = res["accuracy"]
    assert res["data"] == "digits" and res["T"] == 5 and curve["samples"] == 24 and len(curve["acc"]) == 5
    assert curve["mask_seeds"] == [0, 1] and all(0 <= a <= 100 for a in curve["acc"])
    rows = list(csv.DictReader((out / "accuracy_vs_T.csv").open()))
    assert [int(r["t"]) for r in rows] == [1, 2, 3, 4, 5]
    assert [float(r["acc"]) for r in rows] == pytest.approx(curve["acc"], abs=1e-4)
    assert (out / "accuracy_vs_T.png").stat().st_size > 1000
    assert json.loads((out / "conversion.json").read_text())["T"] == 5
    totals = res["energy"]["totals"]
    assert totals["mst_power_alpha"] == pytest.approx(totals["spikes"] / 1e-3)
    snn, state = load_model(out / "snn.pt")
    assert state["model_config"]["converted"] and snn.config.T == 5 and snn.config.mask.ratio == 0.3
    assert sum(isinstance(m, StepIF) for m in snn.modules()) == res["conversion"]["num_neurons"] > 0
    # the saved SNN is what was evaluated: the same masks from the same seed give the same output
    ann, _ = load_model(ann_ckpt)
    fresh = sm.conversion.convert(ann, 5)
    x = torch.rand(2, 1, 32, 32)
    fresh.reseed_masks(4), snn.eval().reseed_masks(4)
    with torch.no_grad():
        assert torch.equal(fresh(x), snn(x))


def test_convert_mask_ratio_override(ann_ckpt, tmp_path, capsys):
    assert main(["convert", str(ann_ckpt), "--T", "3", "--mask-ratio", "0", "--samples", "8", "--seeds", "3",
                 "--energy-samples", "2", "--out", str(tmp_path / "c"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["accuracy"]["mask_seeds"] == [] and res["energy"]["totals"]["mask_draws"] == 0


@pytest.mark.parametrize("case", ["T0", "converted", "direct", "missing"])
def test_convert_refuses_with_one_clear_line_and_writes_nothing(case, ann_ckpt, tmp_path, capsys):
    ckpt, T, why = ann_ckpt, "4", ""
    if case == "T0":
        T, why = "0", "T"
    elif case == "converted":
        assert main(["convert", str(ann_ckpt), "--T", "2", "--samples", "4", "--seeds", "1", "--energy-samples", "2",
                     "--out", str(tmp_path / "first"), "--json"]) == 0
        capsys.readouterr()
        ckpt, why = tmp_path / "first" / "snn.pt", "already a converted SNN"
    elif case == "direct":
        ckpt = save_checkpoint(tmp_path / "sf.pt", sm.create_model("test_spikformer"))
        why = "trained directly as an SNN"
    else:
        ckpt, why = tmp_path / "nope.pt", "nope.pt"
    out = tmp_path / "out"
    assert main(["convert", str(ckpt), "--T", T, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert why in err and not out.exists()
