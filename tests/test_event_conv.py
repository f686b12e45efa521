"""Event-driven 3x3 convolutions (spikemask.engine.Conv2d over spikemask.kernels): the compiled gather-add
equals oneDNN's convolution and an independent loop over the events, for binary spikes and counts, every
density (all-zero and all-one included), batch 1, one-pixel and odd-sized frames, both memory formats and any
thread count; it falls back to the dense convolution wherever it must, and a whole wide model gives the same
logits and energy counts under both engines."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_active
from torch import nn

import spikemask as sm
from spikemask import kernels
from spikemask.energy import measure_energy
from spikemask.engine import CONV_MIN_CHANNELS, Conv2d, Linear, conv2d, conv_takes_events, event_list, set_engine

WIDE = CONV_MIN_CHANNELS


def frames(n, c, h, w, density=0.2, seed=0, counts=False, channels_last=True):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, c, h, w, generator=g) < density).float()
    if counts:
        x *= torch.randint(1, 4, x.shape, generator=g).float()
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def conv(c_in=8, c_out=WIDE, bias=False, engine="event", seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return Conv2d(c_in, c_out, 3, 1, 1, bias=bias, engine=engine, dtype=dtype).eval()


def close(a, b, atol=1e-5):
    scale = max(1.0, float(b.detach().abs().max())) if b.numel() else 1.0
    return torch.allclose(a, b, rtol=0, atol=atol * scale)


def loop_reference(x, weight):
    """Scatter every event (n, c, y, x) of value v into the 3x3 outputs it reaches: independent of the kernel's
    gather order, of F.conv2d and of the event list."""
    N, C, H, W = x.shape
    out = torch.zeros(N, weight.shape[0], H, W, dtype=torch.float64)
    w = weight.double()
    for n, c, y, xx in torch.nonzero(x).tolist():
        v = float(x[n, c, y, xx])
        for ky in range(3):
            for kx in range(3):
                oy, ox = y - ky + 1, xx - kx + 1  # output pixel whose window puts this input at (ky, kx)
                if 0 <= oy < H and 0 <= ox < W:
                    out[n, :, oy, ox] += v * w[:, c, ky, kx]
    return out.to(x.dtype)


def test_numba_is_installed_for_the_suite():
    # the dev set-up installs the "event" extra; without Numba every test below would test the dense fallback
    assert kernels.available()


@pytest.mark.parametrize("density", [0.0, 0.02, 0.1, 0.3, 1.0])
@pytest.mark.parametrize("counts", [False, True], ids=["spikes", "counts"])
def test_event_conv_equals_onednn_and_an_independent_loop(density, counts):
    m = conv()
    x = frames(2, 8, 5, 7, density=density, counts=counts)
    with torch.no_grad():
        y = m(x)
        assert m.last_path == "event"
        assert y.shape == (2, WIDE, 5, 7)
        assert close(y, F.conv2d(x, m.weight, padding=1))
        assert close(y, loop_reference(x, m.weight))
    if density == 0.0:
        assert torch.equal(y, torch.zeros_like(y))


@pytest.mark.parametrize("hw", [(1, 1), (1, 6), (3, 5), (9, 4)])
def test_small_and_odd_frames_and_batch_one(hw):
    m = conv(bias=True)
    x = frames(1, 8, *hw, density=0.4, seed=2)
    with torch.no_grad():
        assert close(m(x), F.conv2d(x, m.weight, m.bias, padding=1)) and m.last_path == "event"
        empty = x[:0]
        assert m(empty).shape == (0, WIDE, *hw)


def test_memory_format_follows_the_input():
    m = conv(bias=True)
    with torch.no_grad():
        for channels_last in (True, False):
            x = frames(2, 8, 6, 6, channels_last=channels_last)
            y, ref = m(x), F.conv2d(x, m.weight, m.bias, padding=1)
            assert m.last_path == "event" and close(y, ref)
            assert y.is_contiguous(memory_format=torch.channels_last) == channels_last
            assert y.is_contiguous() == (not channels_last)


def test_threads_do_not_change_a_bit():
    m = conv(16, WIDE)
    x = frames(5, 16, 8, 8, density=0.3, counts=True)
    table = m.event_table().numpy()
    idx, off = event_list(x.permute(0, 2, 3, 1).reshape(-1, 16) != 0)
    values = x.permute(0, 2, 3, 1).reshape(-1)[x.permute(0, 2, 3, 1).reshape(-1) != 0].numpy()
    outs = [kernels.conv3x3_events(idx.numpy(), off.numpy(), values, table, (5, 8, 8), threads=t) for t in (1, 2, 3, 8)]
    assert all(np.array_equal(outs[0], o) for o in outs[1:])
    with pytest.raises(ValueError, match="does not fit"):
        kernels.conv3x3_events(idx.numpy(), off.numpy(), None, table, (5, 8, 9))


def test_float64():
    m = conv(dtype=torch.float64)
    x = frames(2, 8, 4, 4).double()
    with torch.no_grad():
        assert torch.allclose(m(x), F.conv2d(x, m.weight, padding=1), rtol=0, atol=1e-12) and m.last_path == "event"


def test_what_stays_dense():
    narrow = Conv2d(8, WIDE - 1, 3, 1, 1, engine="event").eval()
    strided = Conv2d(8, WIDE, 3, 2, 1, engine="event").eval()
    one = Conv2d(8, WIDE, 1, engine="event").eval()
    grouped = Conv2d(8, WIDE, 3, 1, 1, groups=2, engine="event").eval()
    assert not any(conv_takes_events(c) for c in (narrow, strided, one, grouped)) and conv_takes_events(conv())
    x = frames(2, 8, 6, 6)
    with torch.no_grad():
        for c in (narrow, strided, one, grouped):
            assert torch.equal(c(x), c._conv_forward(x, c.weight, c.bias)) and c.last_path == "dense"
        m = conv()
        for real in (torch.randn(2, 8, 6, 6), x * 0.5, x - frames(2, 8, 6, 6, seed=1)):
            assert torch.equal(m(real), F.conv2d(real, m.weight, padding=1)) and m.last_path == "dense"
    m = conv().train()
    y = m(x)
    assert m.last_path == "dense"
    y.sum().backward()
    assert m.weight.grad.abs().sum() > 0
    m.eval()
    m(x)  # grad enabled, weights require grad: dense
    assert m.last_path == "dense"
    with torch.inference_mode():
        m(x)
    assert m.last_path == "event"


def test_without_numba_the_convolutions_run_dense(monkeypatch):
    m = conv()
    x = frames(2, 8, 6, 6)
    monkeypatch.setattr(kernels, "available", lambda: False)
    with torch.no_grad():
        assert torch.equal(m(x), F.conv2d(x, m.weight, padding=1)) and m.last_path == "dense"


def test_auto_threshold_table_updates_and_copies():
    m = conv(engine="auto")
    m.threshold = 0.25
    with torch.no_grad():
        m(frames(2, 8, 6, 6, density=0.05))
        assert m.last_path == "event"
        m(frames(2, 8, 6, 6, density=0.6))
        assert m.last_path == "dense"
        x = frames(2, 8, 6, 6, density=0.1)
        m.weight.mul_(-3)  # in place: the cached table follows
        assert close(m(x), F.conv2d(x, m.weight, padding=1)) and m.last_path == "event"
        twin = copy.deepcopy(m)
        assert twin._table is None and torch.equal(twin(x), m(x))
    assert "engine=auto, threshold=0.25" in repr(m) and "engine" not in repr(Conv2d(2, 2, 3))
    plain = nn.Conv2d(8, WIDE, 3, 1, 1).eval()  # the function serves a plain nn.Conv2d too
    with torch.no_grad():
        y, path = conv2d(plain, x, "event")
    assert path == "event" and close(y, plain(x))


def _wide_pair(name):
    """(dense, event) models of family ``name`` at embed_dim 128: the last stage's and the position
    embedding's convolutions are wide enough for the event path; the same weights, active on ``x``."""
    torch.manual_seed(0)
    dense = sm.create_model(name, embed_dim=WIDE, num_heads=4)
    x = torch.poisson(torch.full((2, 2, 2, 32, 32), 0.4))
    make_active(dense, x)
    event = sm.create_model(name, embed_dim=WIDE, num_heads=4, engine="event")
    event.load_state_dict(dense.state_dict())
    return dense.eval(), event.eval(), x


@pytest.mark.parametrize("name", ["test_spikformer", "test_spikingformer", "test_saformer"])
def test_wide_models_equal_under_both_engines(name):
    dense, event, x = _wide_pair(name)
    with torch.no_grad():
        ref, out = dense(x), event(x)
        ref1, out1 = dense(x[:1, :1]), event(x[:1, :1])  # T = 1, batch 1
    convs = {n: m.last_path for n, m in event.named_modules() if isinstance(m, Conv2d)}
    wide = {n for n, m in event.named_modules() if isinstance(m, Conv2d) and conv_takes_events(m)}
    assert len(wide) >= 2 and all(convs[n] == "event" for n in wide)
    assert all(p == "dense" for n, p in convs.items() if n not in wide)
    assert torch.allclose(out, ref, rtol=0, atol=1e-4) and torch.allclose(out1, ref1, rtol=0, atol=1e-4)
    a, b = measure_energy(dense, [x]), measure_energy(event, [x])
    for key in ("layers", "totals", "masks", "neurons", "additions"):
        assert same_counts(a[key], b[key]), key


def same_counts(a, b):
    """Equal, floats to rounding: a real-valued tokenizer output (Spikingformer's, SAFormer's BN) carries the
    convolution's summation order into the means the report keeps; the spike counts stay exact."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_counts(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same_counts(u, v) for u, v in zip(a, b))
    if isinstance(a, float) and not float(a).is_integer():
        return b == pytest.approx(a, rel=1e-5, abs=1e-9)
    return a == b


def test_set_engine_reaches_the_convolutions():
    dense, _, x = _wide_pair("test_spikformer")
    n_linear = sum(isinstance(m, Linear) for m in dense.modules())
    n_conv = sum(isinstance(m, Conv2d) for m in dense.modules())
    assert n_conv == 5 and set_engine(dense, "event") == n_linear + n_conv
    assert all(m.engine == "event" for m in dense.modules() if isinstance(m, Conv2d))
