"""``spikemask demo`` on a tiny τ x T study: outputs, the Table-1 numbers, reuse of finished cells."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re

import matplotlib.image
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from spikemask.cli.main import main
from spikemask.data import get_dataset
from spikemask.train import evaluate, load_model

TABLE_COLUMNS = ["Model", "T", "M (%)", "Acc (%)", "E (µJ)", "ΔE (%)", "ΔE vs T=2 (%)", "Param (M)"]



STUDY = {
    "name": "tiny",
    "out_dir": "unused",  # --out replaces it
    "ratios": [0.0, 0.5],
    "time_steps": [2],
    "eval_mask_seeds": 2,
    "energy_samples": 24,
    "inference_only": True,
    "base": {
        "seed": 0,
        "device": "cpu",
        "model": {"name": "test_spikformer", "mask": {"sites": ["attn.q", "attn.k", "attn.scores", "mlp.hidden"]}},
        "data": {"name": "ndigits", "batch_size": 8, "eval_batch_size": 128},
        "optim": {"lr": 3e-2},  # high enough that spikes reach the attention within a few steps
        "schedule": {"epochs": 1, "warmup_epochs": 0, "cooldown_epochs": 0},
        "train": {"max_train_batches": 10, "max_eval_batches": 1, "eval_mask_seeds": 1, "mixup_prob": 0.0},
    },
}


def demo(capsys, cfg_path, out, *overrides) -> str:
    capsys.readouterr()
    argv = ["-q", "demo", "--config", str(cfg_path), "--out", str(out)]
    for o in overrides:
        argv += [o] if o.startswith("--") else ["--set", o]
    code = main(argv)
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    return stdout


def table_rows(stdout: str, n: int) -> list[list[str]]:
    """The first table's n data rows, split into cells (cells are separated by two or more spaces)."""
    lines = stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("Model "))
    assert re.split(r"\s{2,}", lines[head].strip()) == TABLE_COLUMNS
    return [re.split(r"\s{2,}", line.strip()) for line in lines[head + 2: head + 2 + n]]


def mtimes(study_dir) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in sorted(study_dir.glob("*/last.pt"))}


@pytest.fixture(scope="module")
def study(ndigits_root, tmp_path_factory):
    """One run of the tiny study through the CLI, shared by the tests below: (config path, out dir, stdout)."""
    tmp = tmp_path_factory.mktemp("study")
    cfg_path = tmp / "study.yaml"
    cfg_path.write_text(yaml.safe_dump(STUDY))
    out = tmp / "out"
    buf = io.StringIO()  # capsys is function-scoped: capture by hand
    with contextlib.redirect_stdout(buf):
        code = main(["-q", "demo", "--config", str(cfg_path), "--out", str(out)])
    assert code == 0
    return cfg_path, out, buf.getvalue()


def test_outputs(study):
    _, out, stdout = study
    sd = out / "tiny"
    result = json.loads((sd / "results.json").read_text())
    rows = result["rows"]
    assert [(r["model"], r["T"], r["mask_ratio"]) for r in rows] == [
        ("Spikformer", 2, 0.0), ("Spikformer + RSM at inference", 2, 0.5), ("Masked Spikformer", 2, 0.5)]

    with open(sd / "results.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames
        csv_rows = list(reader)
    assert {"model", "T", "mask_ratio", "acc", "acc_std", "energy_mj", "energy_mj_std", "delta_e_pct",
            "params_m", "sops", "macs", "run_dir"} <= set(header)
    assert len(csv_rows) == 3
    for c, r in zip(csv_rows, rows):
        assert c["model"] == r["model"] and float(c["energy_mj"]) == pytest.approx(r["energy_mj"])
        assert float(c["acc"]) == pytest.approx(r["acc"])

    png = sd / "accuracy_vs_energy.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100

    for cell, ratio in [("T2_tau00", 0.0), ("T2_tau50", 0.5)]:
        cfg = yaml.safe_load((sd / cell / "config.yaml").read_text())
        assert cfg["model"]["T"] == 2 and cfg["model"]["mask"]["ratio"] == ratio
        assert cfg["model"]["embed_dim"] == 32  # resolved: the whole model config
        assert cfg["out_dir"] == str(sd) and cfg["name"] == cell
    assert sorted(p.name for p in sd.iterdir() if p.is_dir()) == ["T2_tau00", "T2_tau50"]
    assert yaml.safe_load((sd / "study.yaml").read_text())["ratios"] == [0.0, 0.5]
    assert "results.csv" in stdout and "accuracy_vs_energy.png" in stdout


def test_table_and_energy_savings(study):
    _, out, stdout = study
    result = json.loads((out / "tiny" / "results.json").read_text())
    rows = result["rows"]
    base = rows[0]
    assert result["reference"] == {"T": 2, "energy_mj": base["energy_mj"],
                                   "energy_mj_by_model": {"test_spikformer": base["energy_mj"]}}
    printed = table_rows(stdout, len(rows))
    for r, cells in zip(rows, printed):
        assert cells[0] == r["model"] and cells[1] == "2"
        want = 100 * (1 - r["energy_mj"] / base["energy_mj"])
        assert r["delta_e_pct"] == pytest.approx(want) and r["delta_e_ref_pct"] == pytest.approx(want)
        if r["mask_ratio"]:
            assert cells[2] == "50" and cells[5] == f"{want:.1f}"
        else:
            assert cells[2] == "-" and cells[5] == "-"
        assert cells[4].split(" ± ")[0] == f"{r['energy_mj'] * 1e3:.1f}"  # µJ
        assert cells[3].split(" ± ")[0] == f"{r['acc']:.2f}"
        # the saving splits into what the masked layers save and the rest
        saved = base["energy_mj"] - r["energy_mj"]
        assert r["saved_in_masked_layers_mj"] + r["saved_elsewhere_mj"] == pytest.approx(saved, abs=1e-15)
    assert "What explains ΔE" in stdout and "Where the energy goes, T=2" in stdout


def test_masks_at_inference_thin_the_attention(study):
    """Same weights, RSM switched on: Q Kᵀ sees a subset of the spikes, each mask drops about τ of its input."""
    _, out, _ = study
    reports = json.loads((out / "tiny" / "energy_reports.json").read_text())
    assert set(reports) == {"T2_tau0", "T2_tau0.5", "T2_tau0.5_inference_only"}
    base, masked = reports["T2_tau0"], reports["T2_tau0.5_inference_only"]
    qk = {rep_name: next(r for r in rep["layers"] if r["name"].endswith("attn.qk"))
          for rep_name, rep in (("base", base), ("masked", masked))}
    assert qk["base"]["sops"] > 0, "the tiny model must fire into the attention for this check to mean anything"
    assert qk["masked"]["sops"] < qk["base"]["sops"]
    q_mask = next(m for m in masked["masks"] if m["name"].endswith("mask_q"))
    assert q_mask["nominal"] == 0.5 and q_mask["realised"] == pytest.approx(0.5, abs=0.1)
    assert all(m["nominal"] == 0.0 for m in base["masks"])


def test_accuracy_is_over_the_whole_test_split(study):
    """energy_samples limits the energy measurement only; accuracy is the checkpoint's on all 359 test clips."""
    _, out, _ = study
    rows = json.loads((out / "tiny" / "results.json").read_text())["rows"]
    model, _ = load_model(out / "tiny" / "T2_tau00" / "last.pt")
    test = DataLoader(get_dataset("ndigits", split="test", T=2), batch_size=100)
    assert rows[0]["acc"] == pytest.approx(evaluate(model, test, torch.device("cpu"))["acc"])
    reports = json.loads((out / "tiny" / "energy_reports.json").read_text())
    assert {rep["samples"] for rep in reports.values()} == {24}


def test_rerun_reuses_finished_cells_and_retrains_changed_ones_only_when_asked(study, capsys):
    cfg_path, out, _ = study
    sd = out / "tiny"
    before = mtimes(sd)
    first = json.loads((sd / "results.json").read_text())["rows"]

    demo(capsys, cfg_path, out)
    assert mtimes(sd) == before  # nothing retrained
    assert json.loads((sd / "results.json").read_text())["rows"] == first  # and the same numbers again

    demo(capsys, cfg_path, out, "ratios=[0.0, 0.5, 0.2]")  # one new cell
    now = mtimes(sd)
    assert {k: now[k] for k in before} == before and set(now) == {"T2_tau00", "T2_tau20", "T2_tau50"}

    # every cell's config changed: the finished runs are kept, and the message says how to retrain them
    capsys.readouterr()
    assert main(["demo", "--config", str(cfg_path), "--out", str(out), "--set", "base.optim.lr=0.002"]) == 2
    err = capsys.readouterr().err
    assert "optim.lr" in err and "--overwrite" in err and err.count("\n") == 1, err
    assert mtimes(sd) == now

    demo(capsys, cfg_path, out, "base.optim.lr=0.002", "--overwrite")
    now = mtimes(sd)
    assert all(now[k] != before[k] for k in before)
    for cell in before:
        assert yaml.safe_load((sd / cell / "config.yaml").read_text())["optim"]["lr"] == 0.002
        lines = (sd / cell / "metrics.jsonl").read_text().splitlines()
        assert len(lines) == 1  # a fresh run: the old run's metrics are gone, not appended to


def test_study_reuses_the_runs_final_evaluation(ndigits_root, tmp_path, capsys):
    """With full evaluations in the runs, the study takes their final accuracy (same mask seeds) as is."""
    cfg_path = tmp_path / "study.yaml"
    cfg_path.write_text(yaml.safe_dump(STUDY))
    demo(capsys, cfg_path, tmp_path / "out", "base.train.max_eval_batches=null", "inference_only=false")
    rows = json.loads((tmp_path / "out" / "tiny" / "results.json").read_text())["rows"]
    for row, cell in zip(rows, ["T2_tau00", "T2_tau50"]):
        final = json.loads((tmp_path / "out" / "tiny" / cell / "final.json").read_text())["final"]
        assert (row["acc"], row["acc_std"]) == (final["acc"], final["acc_std"])
        model, _ = load_model(tmp_path / "out" / "tiny" / cell / "last.pt")
        test = DataLoader(get_dataset("ndigits", split="test", T=2), batch_size=100)
        seeds = [0, 1] if model.config.mask.active else None
        assert final["acc"] == pytest.approx(evaluate(model, test, torch.device("cpu"), mask_seeds=seeds)["acc"])
    masked = json.loads((tmp_path / "out" / "tiny" / "T2_tau50" / "final.json").read_text())["final"]
    assert masked["mask_seeds"] == [0, 1]


def test_a_study_compares_families_each_against_itself(ndigits_root, tmp_path, capsys):
    """``models``: the same sweep for Spikformer, Spikingformer and SAFormer, each ΔE against its own baseline."""
    models = ["test_spikformer", "test_spikingformer", "test_saformer"]
    study = {**STUDY, "models": models, "inference_only": False,
             "base": {**STUDY["base"], "model": {"name": "test_spikformer"}}}
    cfg_path = tmp_path / "compare.yaml"
    cfg_path.write_text(yaml.safe_dump(study))
    stdout = demo(capsys, cfg_path, tmp_path / "out")
    sd = tmp_path / "out" / "tiny"
    rows = json.loads((sd / "results.json").read_text())["rows"]
    assert [(r["model"], r["variant"], r["mask_ratio"]) for r in rows] == [
        ("Spikformer", "test_spikformer", 0.0), ("Masked Spikformer", "test_spikformer", 0.5),
        ("Spikingformer", "test_spikingformer", 0.0), ("Masked Spikingformer", "test_spikingformer", 0.5),
        ("SAFormer", "test_saformer", 0.0), ("Masked SAFormer", "test_saformer", 0.5)]
    for plain, masked in zip(rows[::2], rows[1::2]):
        assert plain["delta_e_pct"] == 0.0
        assert masked["delta_e_pct"] == pytest.approx(100 * (1 - masked["energy_mj"] / plain["energy_mj"]))
    assert sorted(p.name for p in sd.iterdir() if p.is_dir()) == sorted(
        f"{m}_T2_tau{t}" for m in models for t in ("00", "50"))
    for m in models:  # each family masks its own default sites
        cfg = yaml.safe_load((sd / f"{m}_T2_tau50" / "config.yaml").read_text())
        assert cfg["model"]["name"] == m and cfg["model"]["mask"]["ratio"] == 0.5
    assert yaml.safe_load((sd / "test_saformer_T2_tau50" / "config.yaml").read_text())["model"]["mask"]["sites"] == [
        "attn.q", "attn.k", "attn.vector", "mlp.hidden"]
    printed = table_rows(stdout, len(rows))
    assert [cells[0] for cells in printed] == [r["model"] for r in rows]
    assert "Where the energy goes, test_saformer, T=2" in stdout
