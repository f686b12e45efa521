"""Sweeps and the results database: stable run ids, skipping and resuming (after kill -9 too), parallel
workers, merging, export and queries, and bad input that changes nothing."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from spikemask.cli.main import main
from spikemask.config import ConfigError
from spikemask.results import ResultsDB, ResultsError, merge_databases
from spikemask.results.sweep import Sweep, SweepConfig, parse_grid, run_sweep

BASE = {
    "name": "tiny", "seed": 0,
    "model": {"name": "test_spikformer", "T": 2},
    "data": {"name": "ndigits", "batch_size": 32, "eval_batch_size": 128},
    "optim": {"lr": 5e-3},
    "schedule": {"epochs": 1, "warmup_epochs": 0, "cooldown_epochs": 0},
    "train": {"mixup_prob": 0.0, "mixup_off_epoch": None, "eval_every": 1, "max_train_batches": 3},
}


def sweep_cfg(tmp_path, name="s", grid=None, **kw) -> SweepConfig:
    return SweepConfig(name=name, out_dir=str(tmp_path), base=BASE, grid=grid or {"model.mask.ratio": [0.0, 0.5]},
                       mask_seeds=2, energy_samples=8, probes=False, **kw)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_grid_parsing_and_stable_run_ids(tmp_path):
    assert parse_grid(["model.T=4,8", "model.mask.ratio=0, 0.5"]) == {"model.T": [4, 8], "model.mask.ratio": [0, 0.5]}
    a = Sweep(sweep_cfg(tmp_path, grid={"model.T": [1, 2], "model.mask.ratio": [0.0, 0.5]}, train_seeds=2))
    assert len(a.runs) == 8 and len({r.run_id for r in a.runs}) == 8
    assert sorted(r.train_seed for r in a.runs) == [0] * 4 + [1] * 4
    # the same runs written another way (another grid order, another sweep name) have the same ids
    b = Sweep(sweep_cfg(tmp_path, name="other", grid={"model.mask.ratio": [0.5, 0.0], "model.T": [2, 1]},
                        train_seeds=2))
    assert {r.run_id for r in a.runs} == {r.run_id for r in b.runs}
    # a value equal to the default is the same run as leaving the key out: measured once
    c = Sweep(sweep_cfg(tmp_path, grid={"model.T": [2, 2.0]}))
    assert len(c.runs) == 1


@pytest.mark.parametrize("grid, message", [
    ({}, "grid is empty"),
    ({"model.T": []}, "has no values"),
    ({"model.Tx": [1]}, "unknown config key 'model.Tx'. Did you mean 'T'"),
    ({"optim.lr": [-1.0]}, "optim.lr"),
    ({"model.mask.ratio": [1.0]}, "ratio"),
])
def test_bad_grids_are_refused_before_anything_is_written(tmp_path, grid, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        run_sweep(SweepConfig(name="bad", out_dir=str(tmp_path), base=BASE, grid=grid))
    assert not (tmp_path / "bad").exists()
    with pytest.raises(ConfigError, match="KEY=V1,V2"):
        parse_grid(["model.T"])


def test_sweep_records_every_evaluation_and_skips_finished_runs(ndigits_root, tmp_path):
    cfg = sweep_cfg(tmp_path, eval_ratios=(0.5,), blocks_eval=True)
    summary = run_sweep(cfg)
    assert (summary["runs"], summary["done"], summary["skipped"], summary["failed"]) == (2, 2, 0, {})
    with ResultsDB(cfg.db_path, create=False) as db:
        runs = {r["mask_ratio"]: r for r in db.runs()}
        evals = db.evaluations()
        assert set(runs) == {0.0, 0.5} and all(r["params"] == 28906 for r in runs.values())
        assert all(r["machine"]["cpus"] and r["wall_s"] > 0 for r in runs.values())
        masked = [e for e in evals if e["run_id"] == runs[0.5]["run_id"]]
        assert [(e["kind"], e["mask_seed"]) for e in masked] == [("as_trained", 0), ("as_trained", 1)]
        plain = [e for e in evals if e["run_id"] == runs[0.0]["run_id"]]
        kinds = sorted((e["kind"], e["masked"], e["mask_seed"]) for e in plain)
        assert kinds == [("as_trained", None, None), ("blocks", "default sites", 0), ("blocks", "default sites", 1),
                         ("inference", "MLP", 0), ("inference", "MLP", 1),
                         ("inference", "attention", 0), ("inference", "attention", 1)]
        inference = [e for e in plain if e["kind"] == "inference"]
        assert {tuple(e["mask"]["sites"]) for e in inference} == {("mlp.hidden",),
                                                                   ("attn.q", "attn.k", "attn.scores")}
        # per-layer rows sum to the total; masks carry their nominal ratio
        e = masked[0]
        layers = db.table("layers", [e["eval_id"]])
        assert sum(r["energy_pj"] for r in layers) / 1e9 == pytest.approx(e["energy_mj"], rel=1e-9)
        nominal = {m["site"]: m["nominal"] for m in db.table("masks", [e["eval_id"]])}
        trained = {"blocks.0.attn.mask_q", "blocks.0.attn.mask_k", "blocks.0.attn.mask_scores",
                   "blocks.0.mlp.mask_hidden"}
        assert {k for k, v in nominal.items() if v == 0.5} == trained and set(nominal.values()) == {0.0, 0.5}
        assert db.table("neurons", [e["eval_id"]])
        # the training run's own final accuracy is reused for the as-trained rows: same numbers
        final = yaml.safe_load((Path(runs[0.5]["run_dir"]) / "final.json").read_text())["final"]
        assert [m["acc"] for m in masked] == final["per_seed"]
    before = digest(cfg.db_path)
    again = run_sweep(cfg)
    assert (again["done"], again["skipped"]) == (0, 2) and digest(cfg.db_path) == before


def test_same_config_same_numbers(ndigits_root, tmp_path):
    a, b = sweep_cfg(tmp_path, name="a"), sweep_cfg(tmp_path, name="b")
    run_sweep(a), run_sweep(b)
    with ResultsDB(a.db_path) as da, ResultsDB(b.db_path) as dbb:
        key = lambda e: (e["run_id"], e["name"], e["mask_seed"] if e["mask_seed"] is not None else -1)  # noqa: E731
        ea, eb = sorted(da.evaluations(), key=key), sorted(dbb.evaluations(), key=key)
        assert [(e["run_id"], e["acc"], e["energy_mj"]) for e in ea] == [(e["run_id"], e["acc"], e["energy_mj"])
                                                                         for e in eb]


def test_event_engine_sweep_measures_the_same_numbers(ndigits_root, tmp_path):
    """``engine`` is how the evaluations compute, not what was trained: same run ids, same accuracy and energy."""
    grid = {"model.mask.ratio": [0.0]}
    dense = sweep_cfg(tmp_path, name="dense", grid=grid, eval_ratios=(0.5,))
    event = sweep_cfg(tmp_path, name="event", grid=grid, eval_ratios=(0.5,), engine="event")
    run_sweep(dense), run_sweep(event)
    with ResultsDB(dense.db_path) as da, ResultsDB(event.db_path) as db:
        key = lambda e: (e["name"], e["mask_seed"] if e["mask_seed"] is not None else -1)  # noqa: E731
        ea = sorted((e for e in da.evaluations() if e["kind"] == "inference"), key=key)
        eb = sorted((e for e in db.evaluations() if e["kind"] == "inference"), key=key)
        assert len(ea) == 4 and [e["run_id"] for e in ea] == [e["run_id"] for e in eb]
        for a, b in zip(ea, eb):
            assert abs(a["acc"] - b["acc"]) <= 100.0 / a["samples"] + 1e-9  # percent; a near-tie may flip on rounding
            assert b["energy_mj"] == pytest.approx(a["energy_mj"], rel=1e-6)
    with pytest.raises(ConfigError, match="engine"):
        sweep_cfg(tmp_path, engine="sparse")


def _done(db_path: Path) -> int:
    try:
        con = sqlite3.connect(db_path, timeout=1)
        try:
            return con.execute("SELECT COUNT(*) FROM runs WHERE status = 'done'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def test_killed_sweep_resumes_without_redoing_finished_runs(ndigits_root, tmp_path):
    base = dict(BASE, schedule={"epochs": 2, "warmup_epochs": 0, "cooldown_epochs": 0})
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    args = ["sweep", "--config", str(tmp_path / "base.yaml"), "--grid", "model.mask.ratio=0,0.5",
            "--mask-seeds", "1", "--energy-samples", "4", "--no-probes", "--out", str(tmp_path), "--name", "k"]
    db_path = tmp_path / "k" / "results.db"
    env = dict(os.environ, SPIKEMASK_DATA=str(ndigits_root), SPIKEMASK_PROGRESS="0")
    proc = subprocess.Popen([sys.executable, "-m", "spikemask.cli.main", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while _done(db_path) < 1 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with ResultsDB(db_path, create=False) as db:
        finished = {r["run_id"]: r["finished"] for r in db.runs()}
        assert len(finished) == 1  # killed midway: one run done, the other not
        half = db.runs(status="running")
    assert main(args) == 0
    with ResultsDB(db_path, create=False) as db:
        assert db.counts()["done"] == 2 and db.counts()["running"] == 0
        for run in db.runs():
            if run["run_id"] in finished:  # never redone
                assert run["finished"] == finished[run["run_id"]]
            assert len(db.evaluations(run["run_id"])) == 1  # one mask seed
        for run in half:  # the interrupted one resumed from its checkpoint, its results recorded once
            assert len(db.evaluations(run["run_id"])) >= 1


def test_parallel_workers_write_one_consistent_database(ndigits_root, tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKEMASK_DATA", str(ndigits_root))
    cfg = sweep_cfg(tmp_path, grid={"model.mask.ratio": [0.0, 0.5], "model.T": [1]}, workers=2)
    summary = run_sweep(cfg)
    assert summary["done"] == 2 and not summary["failed"]
    with ResultsDB(cfg.db_path) as db:
        assert db.counts() == {"done": 2, "running": 0, "failed": 0, "evaluations": 3}
        assert sqlite3.connect(cfg.db_path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_merge_export_query_and_foreign_files(ndigits_root, tmp_path, capsys):
    a = sweep_cfg(tmp_path, name="a", grid={"model.mask.ratio": [0.0]})
    b = sweep_cfg(tmp_path, name="b", grid={"model.mask.ratio": [0.0, 0.5]})
    run_sweep(a), run_sweep(b)
    before = digest(a.db_path), digest(b.db_path)
    out = tmp_path / "merged.db"
    assert main(["results", "merge", str(a.sweep_dir), str(b.db_path), "--out", str(out)]) == 0
    assert (digest(a.db_path), digest(b.db_path)) == before  # sources untouched
    with ResultsDB(out) as db:
        assert db.counts()["done"] == 2 and db.counts()["evaluations"] == 3
        assert len(db.query({"model.mask.ratio": 0.5})) == 2 and len(db.query({"model.T": 2})) == 3
        csv_text = db.export_csv({"model.mask.ratio": 0})
        assert csv_text.count("\n") == 2 and "config.model.mask.ratio" in csv_text.splitlines()[0]
        merged_rows = {(e["run_id"], e["name"], e["mask_seed"], e["acc"]) for e in db.evaluations()}
    with ResultsDB(b.db_path) as db:
        assert {(e["run_id"], e["name"], e["mask_seed"], e["acc"]) for e in db.evaluations()} == merged_rows
    stats = merge_databases(tmp_path / "m2.db", [a.db_path, b.db_path])
    assert stats["duplicates"] == 1 and stats["conflicts"] == [] and stats["runs_added"] == 2
    capsys.readouterr()
    assert main(["results", "merge", str(a.db_path), "--out", str(out)]) == 2  # exists: refused
    assert "exists" in capsys.readouterr().err
    assert main(["results", "export", str(b.sweep_dir), "--where", "model.mask.ratio=0.5",
                 "--out", str(tmp_path / "x.csv")]) == 0
    assert (tmp_path / "x.csv").read_text().count("\n") == 3
    with pytest.raises(ResultsError, match="Did you mean 'model.T'"):
        ResultsDB(b.db_path).query({"model.TT": 1})

    foreign = tmp_path / "foreign.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"SQLite format 3\x00" + os.urandom(3000))
    text = tmp_path / "notes.db"
    text.write_text("not a database at all\n" * 100)
    for bad, why in ((foreign, "not a spikemask results database"), (corrupt, "corrupt or foreign"),
                     (text, "corrupt or foreign")):
        h = digest(bad)
        with pytest.raises(ResultsError, match=why):
            ResultsDB(bad)
        with pytest.raises(ResultsError, match=why):
            merge_databases(tmp_path / "never.db", [a.db_path, bad])
        assert digest(bad) == h and not (tmp_path / "never.db").exists()
    with pytest.raises(ResultsError, match="no results database"):
        ResultsDB(tmp_path / "missing.db", create=False)


def test_engine_options_of_the_study_commands(tmp_path):
    from spikemask.cli.main import build_parser
    from spikemask.cli.sweep_cmd import sweep_config_from_args

    parser = build_parser()
    args = parser.parse_args(["sweep", "--config", "spikformer_ndigits", "--grid", "model.T=2", "--engine", "event"])
    assert sweep_config_from_args(args).engine == "event"
    assert parser.parse_args(["search", "ckpt.pt", "--engine", "auto"]).engine == "auto"
    assert parser.parse_args(["demo", "--engine", "event"]).engine == "event"
    with pytest.raises(SystemExit):
        parser.parse_args(["sweep", "--config", "spikformer_ndigits", "--grid", "model.T=2", "--engine", "sparse"])
