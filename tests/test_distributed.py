"""A real two-process CPU run through ``torchrun`` (gloo): one checkpoint, rank-0 metrics, sharded evaluation exact."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from spikemask.data import get_dataset
from spikemask.train import evaluate, load_checkpoint, load_model

pytestmark = pytest.mark.slow



def test_torchrun_two_processes_match_single_process_evaluation(ndigits_root, tmp_path):
    out = tmp_path / "runs"
    config = {
        "name": "ddp",
        "out_dir": str(out),
        "seed": 3,
        "device": "cpu",
        "model": {"name": "test_spikformer"},  # no masks: per-sample masks would differ between 1 and 2 shards
        "data": {"batch_size": 16, "eval_batch_size": 32},
        "optim": {"lr": 1e-2},
        "schedule": {"epochs": 2, "warmup_epochs": 0, "cooldown_epochs": 0},
        # the full test split in every evaluation: the all-reduce must see each of the 359 samples exactly once
        "train": {"max_train_batches": 12, "max_eval_batches": None, "mixup_prob": 0.0, "eval_mask_seeds": 1},
    }
    cfg_file = tmp_path / "ddp.yaml"
    cfg_file.write_text(yaml.safe_dump(config))
    env = dict(os.environ, SPIKEMASK_DATA=ndigits_root, OMP_NUM_THREADS="1", SPIKEMASK_PROGRESS="0")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           "-m", "spikemask.cli.main", "train", "--config", str(cfg_file)]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("test accuracy") == 1, "rank 0 reports, the other rank stays quiet"

    run_dir = out / "ddp"
    assert sorted(p.name for p in run_dir.glob("*.pt")) == ["best.pt", "last.pt"]
    assert not list(run_dir.glob(".*.tmp")), "temporary files left behind"
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1], "metrics must be written by rank 0 only, once per epoch"

    state = load_checkpoint(run_dir / "last.pt")
    assert state["epoch"] == 1
    assert [h["test_acc"] for h in state["history"]] == [r["test_acc"] for r in lines]
    final = json.loads((run_dir / "final.json").read_text())["final"]

    # one process, the whole test split, the saved weights: the same count of correct samples
    model, _ = load_model(run_dir / "last.pt")
    test = get_dataset("ndigits", split="test", T=model.config.T)
    single = evaluate(model, DataLoader(test, batch_size=50), torch.device("cpu"))
    assert final["acc"] == pytest.approx(single["acc"], abs=1e-9)
    assert lines[-1]["test_acc"] == pytest.approx(single["acc"], abs=1e-9)
    assert final["loss"] == pytest.approx(single["loss"], rel=1e-5)
    assert single["acc"] > 0  # so that k/360 (a padded shard) could not pass for j/359
