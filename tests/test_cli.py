"""The ``spikemask`` command line, in-process through ``main(argv)``, plus one run of the real console script."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import spikemask as sm
from spikemask.cli.main import main
from spikemask.train import load_checkpoint, save_checkpoint

E_AC_PJ, E_MAC_PJ = 0.9, 4.6  # 45 nm (Horowitz 2014), the papers' unit costs
SMALL = ["test_spikformer", "spikformer_2_64_ndigits"]



def run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv):
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def tiny_yaml(tmp_path, name="cli", **sections) -> Path:
    cfg = {
        "name": name, "out_dir": str(tmp_path / "runs"), "device": "cpu", "seed": 0,
        "model": {"name": "test_spikformer", "mask": {"ratio": 0.0}},
        "data": {"name": "ndigits", "batch_size": 8},
        "schedule": {"epochs": 2, "warmup_epochs": 1, "warmup_lr": 1e-4, "cooldown_epochs": 0},
        "train": {"max_train_batches": 2, "max_eval_batches": 2, "eval_mask_seeds": 2, "mixup_prob": 0.0},
    }
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def metric_lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- models


def test_models_table(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0
    lines = out.splitlines()
    for name in sm.list_models():
        row = next(line for line in lines if line.split()[0] == name)
        if name in SMALL:
            assert f"{sm.count_parameters(sm.create_model(name)):,}" in row.split()


def test_models_json(capsys):
    infos = run_json(capsys, "models")
    assert [i["name"] for i in infos] == sm.list_models()
    assert all(isinstance(i["params"], int) and i["params"] > 0 for i in infos)
    by_name = {i["name"]: i for i in infos}
    for name in SMALL:
        assert by_name[name]["params"] == sm.count_parameters(sm.create_model(name))
    only = run_json(capsys, "models", "spikformer_8_*")
    assert [i["name"] for i in only] == [n for n in sm.list_models() if n.startswith("spikformer_8_")] != []


def test_console_script_entry_point():
    script = Path(sys.executable).with_name("spikemask")
    assert script.is_file(), f"console script not installed next to {sys.executable}"
    proc = subprocess.run([str(script), "models", "--json"], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr
    infos = json.loads(proc.stdout)
    assert {"name": "test_spikformer", "params": sm.count_parameters(sm.create_model("test_spikformer"))}.items() <= \
        next(i for i in infos if i["name"] == "test_spikformer").items()
    bad = subprocess.run([str(script), "eval", "/nonexistent/last.pt"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "does not exist" in bad.stderr


# ---------------------------------------------------------------- train and eval


def test_train_preset_with_overrides_then_eval(ndigits_root, tmp_path, capsys):
    code, out, err = run(capsys, "-q", "train", "--config", "spikformer_ndigits",
                         "--set", "model.name=test_spikformer", "--set", "model.T=2", "--set", "model.mask.ratio=0.5",
                         "--set", f"out_dir={tmp_path / 'runs'}", "--set", "name=preset", "--set", "device=cpu",
                         "--set", "data.batch_size=8", "--set", "schedule.epochs=1",
                         "--set", "train.max_train_batches=2", "--set", "train.max_eval_batches=2")
    assert code == 0, err
    run_dir = tmp_path / "runs" / "preset"
    ckpt = run_dir / "last.pt"
    assert str(run_dir) in out and str(ckpt) in out
    stored = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert stored["model"]["name"] == "test_spikformer" and stored["model"]["T"] == 2
    assert stored["model"]["mask"]["ratio"] == 0.5 and stored["optim"]["lr"] == 3e-3  # override + preset value
    assert load_checkpoint(ckpt)["model_config"]["mask"]["ratio"] == 0.5

    code, out, err = run(capsys, "-q", "eval", ckpt, "--seeds", "3", "--batch-size", "128")
    assert code == 0, err
    assert "±" in out and "over 3 mask seeds" in out and "τ=0.5" in out

    res = run_json(capsys, "-q", "eval", ckpt, "--seeds", "3", "--batch-size", "128")
    assert res["mask_seeds"] == [0, 1, 2] and len(res["per_seed"]) == 3
    assert res["acc"] == pytest.approx(statistics.fmean(res["per_seed"]))
    assert res["acc_std"] == pytest.approx(statistics.stdev(res["per_seed"]))
    assert all(100 * round(a * 359 / 100) / 359 == pytest.approx(a) for a in res["per_seed"])  # whole test split
    assert res["model"] == "test_spikformer" and res["data"] == "ndigits" and res["checkpoint"] == str(ckpt)
    assert math.isfinite(res["loss"])


def test_resume_continues_from_last_checkpoint(ndigits_root, tmp_path, capsys):
    cfg = tiny_yaml(tmp_path, "resume")
    run_dir = tmp_path / "runs" / "resume"
    assert run(capsys, "-q", "train", "--config", cfg, "--set", "schedule.epochs=1")[0] == 0
    first = metric_lines(run_dir)
    assert [r["epoch"] for r in first] == [0]

    code, out, err = run(capsys, "-q", "train", "--config", cfg, "--resume")  # the file says 2 epochs
    assert code == 2 and "schedule.epochs: 1 -> 2" in err and "--allow-config-change" in err
    code, out, err = run(capsys, "-q", "train", "--config", cfg, "--resume", "--allow-config-change")
    assert code == 0, err
    lines = metric_lines(run_dir)
    assert [r["epoch"] for r in lines] == [0, 1]
    assert lines[0] == first[0]  # epoch 1 was not trained again
    state = load_checkpoint(run_dir / "last.pt")
    assert state["epoch"] == 1 and [h["epoch"] for h in state["history"]] == [0, 1]

    # from the checkpoint alone: its stored config, with an override
    code, out, err = run(capsys, "-q", "train", "--resume", run_dir / "last.pt", "--set", "schedule.epochs=3",
                         "--allow-config-change")
    assert code == 0, err
    assert [r["epoch"] for r in metric_lines(run_dir)] == [0, 1, 2]
    state = load_checkpoint(run_dir / "last.pt")
    assert state["epoch"] == 2
    assert [(c["at_epoch"], c["changes"]) for c in state["config_changes"]] == [
        (1, {"schedule.epochs": [1, 2]}), (2, {"schedule.epochs": [2, 3]})]


def test_resume_without_a_checkpoint_says_so(ndigits_root, tmp_path, capsys):
    code, _, err = run(capsys, "train", "--config", tiny_yaml(tmp_path, "never"), "--resume")
    assert code == 2 and "last.pt" in err and "does not exist" in err


def test_nan_loss_exits_2_and_names_the_kept_checkpoint(ndigits_root, tmp_path, capsys):
    cfg = tiny_yaml(tmp_path, "nan", optim={"lr": 1e30}, schedule={"epochs": 3}, train={"max_train_batches": 6})
    code, _, err = run(capsys, "-q", "train", "--config", cfg)
    assert code == 2
    assert str(tmp_path / "runs" / "nan" / "last.pt") in err and "loss became" in err


# ---------------------------------------------------------------- energy


TOTAL_KEYS = {"sops", "macs", "energy_mj", "ann_macs", "ann_energy_mj", "dense_macs_per_step"}


def check_report(rep: dict) -> None:
    t = rep["totals"]
    assert TOTAL_KEYS <= set(t)
    assert rep["layers"] and all({"name", "sops", "macs", "energy_pj"} <= set(r) for r in rep["layers"])
    numbers = [v for v in t.values() if isinstance(v, (int, float))]
    numbers += [v for r in rep["layers"] for v in r.values() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    assert all(v >= 0 for v in numbers)
    assert rep["energy_config"]["e_ac_pj"] == E_AC_PJ and rep["energy_config"]["e_mac_pj"] == E_MAC_PJ
    assert t["energy_mj"] == pytest.approx((E_AC_PJ * t["sops"] + E_MAC_PJ * t["macs"]) / 1e9, rel=1e-9)
    assert t["ann_energy_mj"] == pytest.approx(E_MAC_PJ * t["ann_macs"] / 1e9, rel=1e-9)
    assert sum(r["sops"] for r in rep["layers"]) == pytest.approx(t["sops"], rel=1e-9)
    assert sum(r["macs"] for r in rep["layers"]) == pytest.approx(t["macs"], rel=1e-9)


def test_energy_json_measured(ndigits_root, capsys):
    rep = run_json(capsys, "-q", "energy", "--model", "test_spikformer", "--samples", "16")
    check_report(rep)
    assert rep["model"] == "test_spikformer" and rep["T"] == 2 and rep["samples"] == 16
    assert rep["mode"] == "measured" and rep["data"] == "ndigits" and rep["untrained_weights"] is True
    assert rep["totals"]["sops"] > 0  # the event input alone drives accumulates


def test_energy_dense_is_deterministic_and_masks_thin_the_masked_layers(capsys):
    a = run_json(capsys, "-q", "energy", "--model", "test_spikformer", "--dense")
    b = run_json(capsys, "-q", "energy", "--model", "test_spikformer", "--dense")
    assert a == b
    check_report(a)
    assert a["mode"] == "dense"
    tau = 0.3
    m = run_json(capsys, "-q", "energy", "--model", "test_spikformer", "--dense", "--mask-ratio", tau)
    check_report(m)
    assert m["totals"]["dense_macs_per_step"] == a["totals"]["dense_macs_per_step"]  # the architecture is the same
    base = {r["name"]: r for r in a["layers"]}
    factors = {}
    for row in m["layers"]:
        keep = math.prod(1 - mk["nominal"] for mk in row["masks"])
        factors[row["name"].rsplit(".", 1)[-1]] = keep
        assert row["events"] == pytest.approx(base[row["name"]]["events"] * keep, rel=1e-9), row["name"]
        assert row["sops"] == pytest.approx(base[row["name"]]["sops"] * keep, rel=1e-9), row["name"]
    # Q Kᵀ reads two masked factors, the scores·V and fc2 one each; nothing else is thinned
    assert factors["qk"] == pytest.approx((1 - tau) ** 2)
    assert factors["sv"] == pytest.approx(1 - tau) and factors["fc2"] == pytest.approx(1 - tau)
    assert sum(1 for f in factors.values() if f != 1) == 3
    assert m["totals"]["sops"] < a["totals"]["sops"]


def test_energy_of_a_checkpoint(ndigits_root, tmp_path, capsys):
    path = save_checkpoint(tmp_path / "m.pt", sm.create_model("test_spikformer", mask={"ratio": 0.3}))
    rep = run_json(capsys, "-q", "energy", "--checkpoint", path, "--samples", "16", "--seeds", "2")
    check_report(rep)
    assert "τ=0.3" in rep["mask"] and rep["mask_seeds"] == [0, 1] and rep["untrained_weights"] is False
    d = rep["delta"]  # against the same weights without masks
    assert d["saving_pct"] == pytest.approx(100 * (1 - rep["totals"]["energy_mj"] / d["reference_energy_mj"]))
    assert load_checkpoint(path)["model_config"]["mask"]["ratio"] == 0.3


def test_energy_text_report(ndigits_root, capsys):
    code, out, err = run(capsys, "-q", "energy", "--model", "test_spikformer", "--samples", "8", "--mask-ratio", "0.5",
                         "--seeds", "2")
    assert code == 0, err
    assert "blocks.0.attn.qk" in out and "compute energy" in out and "mask seeds: 2" in out
    assert "ΔE" in out and "untrained weights" in out
    code, out, err = run(capsys, "-q", "energy", "--model", "test_spikformer", "--dense")
    assert code == 0 and "dense" in out and "untrained" not in out


def test_energy_model_that_does_not_fit_the_data(ndigits_root, capsys):
    code, _, err = run(capsys, "energy", "--model", "spikformer_4_256")
    assert code == 2
    assert "3x32x32" in err and "2x32x32" in err and "--dense" in err


# ---------------------------------------------------------------- bad input


@pytest.fixture
def checkpoint(tmp_path):
    return save_checkpoint(tmp_path / "ok.pt", sm.create_model("test_spikformer"))


def test_unknown_model_lists_close_names(capsys):
    code, _, err = run(capsys, "energy", "--model", "test_spikformr", "--dense")
    assert code == 2 and "test_spikformr" in err and "test_spikformer" in err


@pytest.mark.parametrize("argv", [
    ["energy", "--model", "test_spikformer", "--dense", "--mask-ratio", "1.5"],
    ["energy", "--model", "test_spikformer", "--dense", "--mask-ratio", "-0.1"],
    ["energy", "--model", "test_spikformer", "--dense", "--mask-ratio", "1"],
    ["eval", "CKPT", "--mask-ratio", "1.5"],
])
def test_mask_ratio_outside_unit_interval_is_refused(argv, checkpoint, capsys):
    code, out, err = run(capsys, *[str(checkpoint) if a == "CKPT" else a for a in argv])
    assert code == 2 and "[0, 1)" in err and out == ""


def test_mask_ratio_outside_unit_interval_is_refused_in_configs(tmp_path, capsys):
    code, _, err = run(capsys, "train", "--config", tiny_yaml(tmp_path), "--set", "model.mask.ratio=1.0")
    assert code == 2 and "mask.ratio" in err and "[0, 1)" in err
    assert not (tmp_path / "runs" / "cli").exists()  # refused before anything was written
    code, _, err = run(capsys, "demo", "--out", tmp_path / "study", "--set", "eval_ratios=[0.5, 1.2]")
    assert code == 2 and "sweep.eval_ratios" in err and "[0, 1)" in err
    code, _, err = run(capsys, "demo", "--out", tmp_path / "study", "--set", "grid={model.mask.ratio: [0, 1.0]}")
    assert code == 2 and "mask.ratio" in err and "[0, 1)" in err
    assert not (tmp_path / "study").exists()


def test_unknown_set_key_lists_valid_keys(tmp_path, capsys):
    code, _, err = run(capsys, "train", "--config", tiny_yaml(tmp_path), "--set", "train.max_train_batchs=2")
    assert code == 2
    assert "train.max_train_batchs" in err and "max_train_batches" in err and "label_smoothing" in err
    code, _, err = run(capsys, "train", "--config", tiny_yaml(tmp_path), "--set", "data.batch_size=many")
    assert code == 2 and "data.batch_size" in err


def test_unknown_preset_lists_presets(capsys):
    code, _, err = run(capsys, "train", "--config", "no_such_preset")
    assert code == 2 and "demo_ndigits" in err


def test_missing_and_corrupt_checkpoints(tmp_path, capsys):
    code, _, err = run(capsys, "eval", tmp_path / "missing.pt")
    assert code == 2 and "missing.pt" in err and "does not exist" in err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x02not a checkpoint at all" * 10)
    for argv in (["eval", bad], ["energy", "--checkpoint", bad, "--dense"], ["train", "--resume", bad]):
        code, _, err = run(capsys, *argv)
        assert code == 2 and "bad.pt" in err and "corrupt" in err, argv


def test_eval_needs_a_seed(checkpoint, capsys):
    code, _, err = run(capsys, "eval", checkpoint, "--seeds", "0")
    assert code == 2 and "--seeds" in err


def test_list_presets(capsys):
    code, out, _ = run(capsys, "train", "--list-presets")
    assert code == 0 and {"demo_ndigits", "spikformer_ndigits"} <= set(out.split())


def test_version_and_help(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == sm.__version__
    code, out, _ = run(capsys)
    assert code == 0 and "demo" in out and "energy" in out
