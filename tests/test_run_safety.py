"""A finished or partial run is never destroyed implicitly, never shared by two processes, never silently
resumed under another config; interrupted writes are cleaned up; a full disk keeps the last good checkpoint."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import spikemask as sm
from spikemask.cli.main import main
from spikemask.config import ConfigError
from spikemask.io import _HOST as HOST
from spikemask.io import LockedError, atomic_path, clean_stale_temps, lock_dir
from spikemask.study import load_study_config, run_study
from spikemask.train import CheckpointError, fit, load_checkpoint, load_model, load_run_config, save_checkpoint
from spikemask.train.rundir import RunExistsError

BASE = {
    "device": "cpu", "seed": 0, "model": {"name": "test_spikformer"},
    "data": {"name": "ndigits", "batch_size": 8},
    "schedule": {"epochs": 1, "warmup_epochs": 0, "cooldown_epochs": 0},
    "train": {"max_train_batches": 2, "max_eval_batches": 1, "eval_mask_seeds": 1, "mixup_prob": 0.0},
}


def tiny(tmp_path, *overrides: str, name: str = "r"):
    return load_run_config({**BASE, "name": name, "out_dir": str(tmp_path / "runs")}, list(overrides))


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir()) if p.is_file() and p.name != ".lock"}


def one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def cli(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def holder(code: str) -> subprocess.Popen:
    """A real second process running ``code`` (with spikemask importable) that prints 'ready' when set."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---------------------------------------------------------------- never destroyed implicitly


def test_rerun_without_resume_refuses_and_touches_nothing(ndigits_root, tmp_path, capsys):
    cfg = tiny(tmp_path)
    fit(cfg)
    before = snapshot(cfg.run_dir)
    assert {"last.pt", "best.pt", "metrics.jsonl", "final.json", "config.yaml"} <= set(before)
    with pytest.raises(RunExistsError, match="--resume.*--overwrite") as err:
        fit(tiny(tmp_path))
    assert "finished run" in str(err.value)
    assert snapshot(cfg.run_dir) == before
    # through the CLI: one line, exit 2, nothing lost
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps({**BASE, "name": "r", "out_dir": str(tmp_path / "runs")}))
    err = one_line_error(*cli(capsys, "train", "--config", path)[::2])
    assert "--overwrite" in err and str(cfg.run_dir) in err
    assert snapshot(cfg.run_dir) == before


def test_partial_run_is_described_and_kept(ndigits_root, tmp_path):
    cfg = tiny(tmp_path, "schedule.epochs=2")
    fit(cfg)
    (cfg.run_dir / "final.json").unlink()  # as if stopped after its last checkpoint
    before = snapshot(cfg.run_dir)
    with pytest.raises(RunExistsError, match=r"partial run \(2 epochs done\)"):
        fit(cfg)
    assert snapshot(cfg.run_dir) == before


def test_metrics_of_a_run_that_never_saved_a_checkpoint_are_not_appended_to(ndigits_root, tmp_path):
    cfg = tiny(tmp_path)
    cfg.run_dir.mkdir(parents=True)
    (cfg.run_dir / "metrics.jsonl").write_text(json.dumps({"epoch": 7}) + "\n")  # killed before its first save
    fit(cfg)
    lines = (cfg.run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0]


def test_resume_and_overwrite_together_are_refused(ndigits_root, tmp_path):
    with pytest.raises(ConfigError, match="one of them"):
        fit(tiny(tmp_path), resume=True, overwrite=True)


# ---------------------------------------------------------------- one process per run directory


def test_second_process_is_refused_naming_the_holder_until_it_dies(ndigits_root, tmp_path):
    cfg = tiny(tmp_path)
    proc = holder(f"""
        import sys, time
        from spikemask.io import lock_dir
        with lock_dir({str(cfg.run_dir)!r}, "run directory"):
            print("ready", flush=True)
            time.sleep(600)
    """)
    try:
        with pytest.raises(LockedError) as err:
            fit(cfg)
        assert f"process {proc.pid}" in str(err.value) and str(cfg.run_dir) in str(err.value)
        assert not (cfg.run_dir / "last.pt").exists()
    finally:
        proc.send_signal(signal.SIGKILL)  # the kernel drops a dead holder's lock: no stale lock is left
        proc.wait()
    assert fit(cfg).checkpoint.is_file()


def test_a_study_directory_is_locked_too(ndigits_root, tmp_path):
    study = load_study_config({"name": "s", "out_dir": str(tmp_path), "base": BASE, "ratios": [0.0],
                               "time_steps": [2]})
    with lock_dir(study.study_dir, "study directory"):  # this process holds it: a second holder is refused
        with pytest.raises(LockedError, match=f"process {os.getpid()}"):
            run_study(study)


def test_lock_is_exclusive_within_one_process_too(tmp_path):
    with lock_dir(tmp_path / "d"):
        with pytest.raises(LockedError):
            with lock_dir(tmp_path / "d"):
                pass
    with lock_dir(tmp_path / "d"):  # released on exit
        pass


# ---------------------------------------------------------------- resume under another config


def test_resume_with_a_changed_config_is_refused_unless_allowed_and_then_recorded(ndigits_root, tmp_path):
    cfg = tiny(tmp_path)
    fit(cfg)
    config_before = (cfg.run_dir / "config.yaml").read_text()
    for change in ("optim.lr=5e-4", "seed=3", "data.batch_size=4"):
        with pytest.raises(ConfigError, match="--allow-config-change") as err:
            fit(tiny(tmp_path, change), resume=True)
        assert change.split("=")[0] in str(err.value)
        assert (cfg.run_dir / "config.yaml").read_text() == config_before
    # where it runs is not what it computes: free to change
    fit(tiny(tmp_path, "device=auto", "data.num_workers=0"), resume=True)

    longer = fit(tiny(tmp_path, "schedule.epochs=2"), resume=True, allow_config_change=True)
    assert [h["epoch"] for h in longer.history] == [0, 1]
    record = [json.loads(line) for line in (cfg.run_dir / "config_changes.jsonl").read_text().splitlines()]
    assert len(record) == 1 and record[0]["at_epoch"] == 1
    assert record[0]["changes"] == {"schedule.epochs": [1, 2]}
    assert load_checkpoint(longer.checkpoint)["config_changes"] == record
    assert json.loads((cfg.run_dir / "final.json").read_text())["config_changes"] == record


def test_resume_from_a_weights_only_checkpoint_says_so(ndigits_root, tmp_path, capsys):
    cfg = tiny(tmp_path)
    save_checkpoint(cfg.run_dir / "last.pt", sm.create_model("test_spikformer", num_classes=10))
    with pytest.raises(CheckpointError, match="no training state"):
        fit(cfg, resume=True)
    err = one_line_error(*cli(capsys, "train", "--resume", cfg.run_dir / "last.pt")[::2])
    assert "no run config" in err or "no training state" in err


def test_resume_without_a_checkpoint_says_there_is_nothing_to_resume(ndigits_root, tmp_path):
    with pytest.raises(CheckpointError, match="nothing to resume"):
        fit(tiny(tmp_path), resume=True)


def test_checkpoint_whose_weights_do_not_fit_its_config(tmp_path, capsys):
    path = save_checkpoint(tmp_path / "m.pt", sm.create_model("test_spikformer"))
    state = torch.load(path, weights_only=True)
    state["model_config"]["mlp_ratio"] = 2.0  # the file now describes a narrower MLP than its weights
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="do not fit its model config.*of another shape"):
        load_model(path)
    err = one_line_error(*cli(capsys, "eval", path)[::2])
    assert str(path) in err


# ---------------------------------------------------------------- interrupted writes


def test_a_write_killed_midway_leaves_a_temporary_that_the_next_start_removes(tmp_path):
    target = tmp_path / "last.pt"
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import os, signal
        from spikemask.io import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            tmp.write_bytes(b"half a checkpoint")
            os.kill(os.getpid(), signal.SIGKILL)
    """)])
    assert proc.returncode == -signal.SIGKILL
    left = [p for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].name.startswith(".last.pt.") and left[0].name.endswith(".tmp")
    assert not target.exists()
    assert clean_stale_temps(tmp_path) == left
    assert list(tmp_path.iterdir()) == []


def test_stale_temporaries_are_removed_but_never_a_live_or_foreign_ones(ndigits_root, tmp_path):
    cfg = tiny(tmp_path)
    cfg.run_dir.mkdir(parents=True)
    live = holder("import time; print('ready', flush=True); time.sleep(600)")
    try:
        dead = dead_pid()
        stale_file = cfg.run_dir / f".last.pt.{HOST}-{dead}.abc123.tmp"
        stale_dir = cfg.run_dir / f".cache.{HOST}-{dead}.xyz.tmp"
        live_file = cfg.run_dir / f".best.pt.{HOST}-{live.pid}.q1w2.tmp"
        foreign = cfg.run_dir / f".last.pt.otherhost-{dead}.e3r4.tmp"
        mine = cfg.run_dir / f".last.pt.{HOST}-{os.getpid()}.t5y6.tmp"
        not_ours = cfg.run_dir / ".notes.tmp"
        stale_file.write_bytes(b"x")
        stale_dir.mkdir()
        (stale_dir / "000000.npz").write_bytes(b"x")
        for p in (live_file, foreign, mine, not_ours):
            p.write_bytes(b"x")
        fit(cfg)
        assert not stale_file.exists() and not stale_dir.exists()
        assert live_file.exists() and foreign.exists() and mine.exists() and not_ours.exists()
    finally:
        live.kill()
        live.wait()


def test_atomic_write_replaces_and_fails_cleanly(tmp_path):
    target = tmp_path / "f.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("new, half")
            raise RuntimeError("writer failed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]


# ---------------------------------------------------------------- a full disk


def _tmpfs_script(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    """Run ``body`` (bash) in a private mount namespace with a 2 MiB tmpfs at $FS; skip if mounting is not allowed."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not installed")
    fs = tmp_path / "fs"
    fs.mkdir()
    probe = subprocess.run(["unshare", "-m", "--", "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(fs)],
                           capture_output=True)
    if probe.returncode != 0:
        probe = subprocess.run(["unshare", "-rm", "--", "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(fs)],
                               capture_output=True)
        flags = "-rm"
    else:
        flags = "-m"
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a private namespace here: {probe.stderr.decode().strip()}")
    script = f"set -u\nmount -t tmpfs -o size=2m tmpfs {fs}\nFS={fs}\n{body}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(["unshare", flags, "--", "bash", "-c", script], capture_output=True, text=True, env=env,
                          timeout=300)


def test_disk_full_is_said_plainly_and_keeps_the_last_good_checkpoint(ndigits_root, tmp_path):
    cfg = {**BASE, "name": "r", "out_dir": "RUNS"}
    (tmp_path / "run.yaml").write_text(json.dumps(cfg))
    spikemask = f"{sys.executable} -m spikemask.cli.main"
    proc = _tmpfs_script(tmp_path, f"""
        cd {tmp_path}
        {spikemask} -q train --config run.yaml --set out_dir=$FS/runs || exit 10
        cp $FS/runs/r/last.pt {tmp_path}/good.pt
        dd if=/dev/zero of=$FS/filler bs=64k 2>/dev/null   # fill the disk to the last block
        {spikemask} -q train --config run.yaml --set out_dir=$FS/runs --set schedule.epochs=2 \\
            --resume --allow-config-change
        echo "rc=$?"
        cmp $FS/runs/r/last.pt {tmp_path}/good.pt && echo same-checkpoint
        ls -a $FS/runs/r
    """)
    assert "rc=2" in proc.stdout, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and "no space left on the device" in lines[0], proc.stderr
    assert "/runs/r/" in lines[0]  # names the file it could not write
    assert "Traceback" not in proc.stderr
    assert "same-checkpoint" in proc.stdout  # the last good checkpoint is untouched
    assert ".tmp" not in proc.stdout  # and the failed write left no temporary behind


def test_the_rename_is_flushed_to_disk_with_its_directory(tmp_path):
    """After the atomic rename, the directory itself is fsynced, so a completed write survives a power loss."""
    if shutil.which("strace") is None:
        pytest.skip("strace(1) is not installed")
    target = tmp_path / "out" / "f.json"
    code = f"from spikemask.io import atomic_write_text; atomic_write_text({str(target)!r}, 'x')"
    proc = subprocess.run(["strace", "-f", "-e", "trace=openat,rename,renameat,renameat2,fsync", sys.executable, "-c",
                           code], capture_output=True, text=True)
    if proc.returncode != 0 and "ptrace" in proc.stderr:
        pytest.skip("ptrace is not permitted here")
    assert target.read_text() == "x"
    trace = [re.sub(r"^\[pid\s+\d+\]\s*", "", line) for line in proc.stderr.splitlines()]
    renamed = next(i for i, line in enumerate(trace) if line.startswith("rename") and f'"{target}"' in line)
    dir_fd = next(line.rsplit("=", 1)[1].strip() for line in trace[renamed:]
                  if line.startswith("openat(") and f'"{target.parent}",' in line)
    assert any(line.startswith(f"fsync({dir_fd})") for line in trace[renamed:]), "\n".join(trace[renamed:])
    assert any(line.startswith("fsync(") for line in trace[:renamed]), "the temporary's bytes are flushed first"
