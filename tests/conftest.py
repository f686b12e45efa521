"""Shared fixtures: an isolated data root with the full N-Digits set (built once per session)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

import spikemask as sm


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Test tensors are tiny: a second thread gains nothing, and OpenMP spin-waits crawl on busy cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def ndigits_root(tmp_path_factory) -> str:
    """A data root holding the full N-Digits set in ``ndigits-v1/`` (where ``get_dataset("ndigits", ...)``
    looks by default); also exported as ``SPIKEMASK_DATA`` for the session.

    The variable is restored afterwards so nothing leaks into the user's ``~/.cache``.
    """
    from spikemask.data import ensure_ndigits

    root = tmp_path_factory.mktemp("spikemask-data")
    old = os.environ.get("SPIKEMASK_DATA")
    os.environ["SPIKEMASK_DATA"] = str(root)
    ensure_ndigits(root / "ndigits-v1")
    yield str(root)
    if old is None:
        os.environ.pop("SPIKEMASK_DATA", None)
    else:
        os.environ["SPIKEMASK_DATA"] = old


def stale_and_live_temps(parent: Path, name: str) -> tuple[Path, Path]:
    """Two temporary directories in ``parent`` named as ``spikemask.io`` names them: one owned by a process
    that has exited (its pid no longer exists), one by this live process."""
    from spikemask.io import private_dir

    live = private_dir(parent, name)  # .<name>.<host>-<this pid>.<random>.tmp
    proc = subprocess.Popen(["true"])
    proc.wait()  # reaped: its pid names no process now
    dead = live.with_name(live.name.replace(f"-{os.getpid()}.", f"-{proc.pid}.", 1))
    dead.mkdir()
    (dead / "half-written.npz").write_bytes(b"x")
    return dead, live


def make_active(model: nn.Module, x: torch.Tensor, gain: float = 2.0) -> nn.Module:
    """Calibrate BatchNorm on ``x`` and widen it so an untrained Spikformer fires at realistic rates.

    BN statistics become exact batch statistics of ``x`` (momentum None, one pass in train mode);
    BN weights ``gain`` make the normalised currents cross the LIF threshold often enough.
    """
    for mod in model.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.momentum = None
            mod.reset_running_stats()
            nn.init.constant_(mod.weight, gain)
    was = model.training
    model.train()
    with torch.no_grad():
        model(x)
    model.train(was)
    return model.eval()


@pytest.fixture
def active_tiny():
    """(model, events): ``test_spikformer`` calibrated to fire on random event counts ``[T=2, B=4, 2, 32, 32]``."""
    torch.manual_seed(0)
    model = sm.create_model("test_spikformer")
    x = torch.poisson(torch.full((2, 4, 2, 32, 32), 0.4))  # event counts 0, 1, 2, ...
    return make_active(model, x), x
