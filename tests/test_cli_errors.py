"""Every error the command line can meet ends in one line (file or key, what was expected, how to fix it),
exit status 2 for bad input and operating-system errors; a traceback only with ``--debug``."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import spikemask as sm
from spikemask.cli.errors import describe_error, exit_code
from spikemask.cli.main import main
from spikemask.config import ConfigError
from spikemask.train import save_checkpoint

BASE = {
    "device": "cpu", "seed": 0, "model": {"name": "test_spikformer"},
    "data": {"name": "ndigits", "batch_size": 8},
    "schedule": {"epochs": 1, "warmup_epochs": 0, "cooldown_epochs": 0},
    "train": {"max_train_batches": 1, "max_eval_batches": 1, "eval_mask_seeds": 1, "mixup_prob": 0.0},
}


def run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(capsys, *argv, code: int = 2) -> str:
    got, _, err = run(capsys, *argv)
    assert got == code, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("spikemask "), err
    return err


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps({**BASE, "name": "r", "out_dir": str(tmp_path / "runs")}))
    return path


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    return save_checkpoint(tmp_path / "m.pt", sm.create_model("test_spikformer"))


# ---------------------------------------------------------------- operating-system errors


def test_output_directory_below_a_file(config, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    err = one_line(capsys, "train", "--config", config, "--set", f"out_dir={blocker}/runs")
    assert str(blocker) in err and "a file is in the way" in err


def test_run_directory_that_is_a_file(config, tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "r").write_text("not a directory")
    err = one_line(capsys, "train", "--config", config)
    assert str(tmp_path / "runs" / "r") in err and "not a directory" in err


def test_demo_output_below_a_file(tmp_path, capsys):
    blocker = tmp_path / "f"
    blocker.write_text("x")
    err = one_line(capsys, "demo", "--out", blocker / "out")
    assert str(blocker) in err


def test_data_root_that_is_a_file(ndigits_root, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "data_file"
    blocker.write_text("x")
    err = one_line(capsys, "data", "prepare", "ndigits", "--root", blocker / "ndigits", "--T", "2")
    assert str(blocker) in err


def test_read_only_file_system(ndigits_root, config, tmp_path):
    """An unwritable output directory (a read-only mount: root ignores permission bits, a mount does not)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not installed")
    ro = tmp_path / "ro"
    ro.mkdir()
    script = (f"mount -t tmpfs -o size=1m,ro tmpfs {ro} || exit 77\n"
              f"{sys.executable} -m spikemask.cli.main train --config {config} --set out_dir={ro}/runs")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(["unshare", "-m", "--", "bash", "-c", script], capture_output=True, text=True, env=env)
    if proc.returncode == 77 or "unshare failed" in proc.stderr:
        proc = subprocess.run(["unshare", "-rm", "--", "bash", "-c", script], capture_output=True, text=True, env=env)
    if proc.returncode == 77 or "unshare failed" in proc.stderr:
        pytest.skip("cannot mount a file system in a private namespace here")
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "read-only file system" in lines[0] and str(ro) in lines[0], proc.stderr


def test_cuda_without_a_gpu(config, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    err = one_line(capsys, "train", "--config", config, "--set", "device=cuda")
    assert "device='cuda'" in err and "device=cpu" in err


def test_invalid_device_name(config, capsys):
    err = one_line(capsys, "train", "--config", config, "--set", "device=gpu0")
    assert "device" in err and "cuda:<index>" in err


# ---------------------------------------------------------------- arguments


@pytest.mark.parametrize("argv,names", [
    (["data", "info", "ndigits", "--samples", "0"], "--samples"),
    (["energy", "--model", "test_spikformer", "--samples", "0"], "--samples"),
    (["energy", "--model", "test_spikformer", "--seeds", "-1"], "--seeds"),
    (["energy", "--model", "test_spikformer", "--T", "0", "--dense"], "--T"),
    (["data", "prepare", "ndigits", "--size", "0", "0"], "--size"),
    (["data", "prepare", "ndigits", "--size", "100000", "100000"], "--size"),
    (["data", "prepare", "ndigits", "--T", "zero"], "--T"),
    (["eval", "x.pt", "--batch-size", "0"], "--batch-size"),
    (["eval", "x.pt", "--mask-ratio", "1"], "--mask-ratio"),
    (["eval", "x.pt", "--mask-ratio", "nan"], "--mask-ratio"),
    (["train", "--bogus"], "--bogus"),
])
def test_bad_arguments(argv, names, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and names in err and "--help" in err, err


# ---------------------------------------------------------------- checkpoints


def test_malicious_checkpoint_is_refused_because_it_holds_code(tmp_path, capsys):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo this must never run",))

    torch.save({"model": Payload()}, tmp_path / "evil.pt")
    (tmp_path / "evil_raw.pt").write_bytes(__import__("pickle").dumps({"model": Payload()}))
    for name in ("evil.pt", "evil_raw.pt"):
        err = one_line(capsys, "eval", tmp_path / name)
        assert "holds code" in err and "system" in err and "corrupt" not in err, err


def test_garbage_checkpoint_is_called_corrupt(tmp_path, capsys):
    (tmp_path / "junk.pt").write_bytes(b"\x80\x02garbage" * 10)
    err = one_line(capsys, "eval", tmp_path / "junk.pt")
    assert "corrupt" in err and "holds code" not in err


def test_checkpoint_that_is_a_directory_or_missing(tmp_path, capsys):
    assert "is a directory" in one_line(capsys, "eval", tmp_path)
    assert "does not exist" in one_line(capsys, "energy", "--checkpoint", tmp_path / "nope.pt")


# ---------------------------------------------------------------- the last resort


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ConfigError):
        main(["--debug", "train", "--config", str(tmp_path / "missing.yaml")])


def test_an_unexpected_error_says_it_is_a_bug():
    exc = KeyError("layers")
    line = describe_error(exc)
    assert "bug" in line and "--debug" in line and "KeyError" in line and exit_code(exc) == 1
    wrapped = RuntimeError("file write failed")
    wrapped.__cause__ = OSError(errno.ENOSPC, "No space left on device", "/x/last.pt")
    assert describe_error(wrapped) == "/x/last.pt: no space left on the device; free some space or write " \
                                      "elsewhere (out_dir / --out / data.root)"
    assert "out of memory" in describe_error(MemoryError()) and exit_code(MemoryError()) == 2
