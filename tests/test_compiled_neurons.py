"""The compiled neuron loop (spikemask.kernels.neuron_sequence, taken by spikemask.neurons on CPU when Numba is
installed) gives the bits of the PyTorch-op loop it replaces: spikes and membranes H, LIF and IF, every reset,
thresholds and leaks that round differently, inf / NaN / -0, T = 1, channels-last and strided inputs, any
thread count, and whole models' logits and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import make_active

import spikemask as sm
from spikemask import kernels
from spikemask.neurons import (
    _compiled,
    inference_torch,
    make_neuron,
    multi_step_inference,
    multi_step_with_h,
    with_h_torch,
)

# (leak, v_th, v_reset, v_init, hard reset): LIF tau 2 / 3 with zero, negative and positive resets; IF
DYNAMICS = [(0.5, 1.0, 0.0, 0.0, True), (1 / 3, 0.1, 0.0, 0.0, True), (1 / 1.5, 0.7, -0.3, -0.3, True),
            (1 / 3, 0.3, 0.7, 0.1, True), (0.0, 1.0, 0.0, 0.5, False), (0.0, 0.1, 0.0, 0.0, False)]


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int64 if t.dtype == torch.float64 else torch.int32)


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same layout and bits (-0 and +0 told apart); NaN is NaN whatever its sign bit or payload."""
    nan = a.isnan()
    return (a.shape == b.shape and a.stride() == b.stride() and torch.equal(nan, b.isnan())
            and torch.equal(bits(a.masked_fill(nan, 0)), bits(b.masked_fill(nan, 0))))


def inputs(*shape, dtype=torch.float32, seed=0, v_th=1.0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(*shape, generator=g) * 1.5 + 0.3).to(dtype)
    flat = x.view(-1)
    special = torch.tensor([float("inf"), float("-inf"), float("nan"), -0.0, 0.0, v_th, 2 * v_th], dtype=dtype)
    flat[: min(len(special), flat.numel())] = special[: flat.numel()]
    return x


def test_the_suite_runs_the_compiled_path():
    assert kernels.available() and _compiled(torch.zeros(2, 3))
    assert not _compiled(torch.zeros(2, 3, dtype=torch.float16)) and not _compiled(torch.zeros(4, 6)[:, ::2])


@pytest.mark.parametrize("dynamics", DYNAMICS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(6, 5, 1001), (1, 3, 7), (4, 1, 1)])  # T = 1, batch 1, one neuron
def test_spikes_and_membranes_are_the_torch_ops_bits(dynamics, dtype, shape):
    x = inputs(*shape, dtype=dtype, v_th=dynamics[1])
    assert same(multi_step_inference(x, *dynamics), inference_torch(x, *dynamics))
    s, h = multi_step_with_h(x, *dynamics)
    s_ref, h_ref = with_h_torch(x, *dynamics)
    assert same(s, s_ref) and same(h, h_ref)


@pytest.mark.parametrize("dynamics, centre", [((1 / 3, 0.3, 0.0, 0.0, True), 0.9),  # H = X / 3
                                              ((1 / 3, 0.3, 0.05, 0.05, True), 0.75)])  # H = 0.05 + X / 3
def test_membranes_within_ulps_of_the_threshold(dynamics, centre):
    """A million first-step membranes within ulps of the threshold after a leak that rounds (tau 3): the
    comparison and the fused charge decide each spike; one flipped spike would fail."""
    base = torch.full((1_000_000,), centre, dtype=torch.float32)
    ulps = torch.randint(-64, 65, base.shape, generator=torch.Generator().manual_seed(1), dtype=torch.int32)
    x = (base.view(torch.int32) + ulps).view(torch.float32)  # within 64 ulps of the centre
    x = torch.stack([x, x.flip(0)])  # the second step charges from a reset or a leaked membrane
    out = multi_step_inference(x, *dynamics)
    assert same(out, inference_torch(x, *dynamics))
    assert 0.2 < float(out[0].mean()) < 0.8  # both sides of the threshold


def test_all_silent_and_all_firing():
    for x in (torch.zeros(3, 4, 5), torch.full((3, 4, 5), 10.0), torch.full((3, 4, 5), -10.0)):
        out = multi_step_inference(x, 0.5, 1.0, 0.0, 0.0, True)
        assert same(out, inference_torch(x, 0.5, 1.0, 0.0, 0.0, True))
    assert torch.equal(multi_step_inference(torch.full((3, 4), 10.0), 0.5, 1.0, 0.0, 0.0, True), torch.ones(3, 4))
    assert not multi_step_inference(torch.zeros(3, 4), 0.5, 1.0, 0.0, 0.0, True).any()


def test_layouts_channels_last_strided_and_empty():
    frames = inputs(3, 4, 8, 5, 5).flatten(0, 1).contiguous(memory_format=torch.channels_last).view(3, 4, 8, 5, 5)
    assert _compiled(frames) and not frames.is_contiguous()
    out = multi_step_inference(frames, 0.5, 1.0, 0.0, 0.0, True)
    assert same(out, inference_torch(frames, 0.5, 1.0, 0.0, 0.0, True))  # same values and the same strides
    strided = inputs(4, 6, 10)[:, :, ::2]  # not dense: the PyTorch loop
    assert not _compiled(strided)
    assert torch.equal(multi_step_inference(strided, 0.5, 1.0, 0.0, 0.0, True),
                       inference_torch(strided.contiguous(), 0.5, 1.0, 0.0, 0.0, True))
    offset = inputs(5, 3, 7)[2:]  # a view with a storage offset
    assert _compiled(offset) and same(multi_step_inference(offset, 0.5, 1.0, 0.0, 0.0, True),
                                      inference_torch(offset, 0.5, 1.0, 0.0, 0.0, True))
    empty = torch.zeros(3, 0, 4)
    assert multi_step_inference(empty, 0.5, 1.0, 0.0, 0.0, True).shape == (3, 0, 4)


def test_threads_do_not_change_a_bit():
    x = inputs(4, 3, 20000)  # M = 60000: split into several column chunks
    before = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2, 5):
            torch.set_num_threads(n)
            outs.append(multi_step_with_h(x, 1 / 3, 0.3, 0.0, 0.0, True))
    finally:
        torch.set_num_threads(before)
    assert all(same(s, outs[0][0]) and same(h, outs[0][1]) for s, h in outs[1:])


@pytest.mark.parametrize("name", ["test_spikformer", "test_spikingformer", "test_saformer"])
def test_whole_models_give_the_same_bits_with_and_without_the_kernel(name, monkeypatch):
    """Eval logits and a training step's gradients, with the compiled loop and with the PyTorch loop."""
    torch.manual_seed(0)
    model = sm.create_model(name)
    x = torch.poisson(torch.full((2, 3, 2, 32, 32), 0.4))
    make_active(model, x)

    def run():
        model.eval()
        with torch.no_grad():
            logits = model(x)
        model.train()
        model.zero_grad()
        F.cross_entropy(model(x), torch.arange(3)).backward()
        return logits, [p.grad.clone() for p in model.parameters() if p.grad is not None]

    compiled = run()
    monkeypatch.setattr(kernels, "available", lambda: False)
    plain = run()
    assert torch.equal(compiled[0], plain[0])
    assert len(compiled[1]) == len(plain[1]) and all(torch.equal(a, b) for a, b in zip(compiled[1], plain[1]))


# ---------------------------------------------------------------- event lists written by the neuron
@pytest.mark.parametrize("dynamics", DYNAMICS)
@pytest.mark.parametrize("shape", [(6, 5, 1001), (1, 1, 1)])
def test_emitted_positions_are_the_spikes_flatnonzero(dynamics, shape):
    import numpy as np

    x = inputs(*shape, v_th=dynamics[1]).view(shape[0], -1)
    for xs in (x, torch.zeros_like(x), torch.full_like(x, 50.0)):  # some, none and all firing
        out = np.empty(xs.shape, dtype=np.float32)
        positions = kernels.neuron_sequence(xs.numpy(), out, None, *dynamics, emit=True)
        assert np.array_equal(positions, np.flatnonzero(out))
        assert np.array_equal(out, inference_torch(xs, *dynamics).numpy())  # emitting changes no spike


def test_a_neuron_hands_its_event_list_to_the_layer_that_reads_it(monkeypatch):
    from spikemask import engine
    from spikemask.engine import Linear, set_engine

    neuron = make_neuron(sm.NeuronConfig())
    fc = Linear(64, 32, engine="event").eval()
    assert not neuron.emit_events
    set_engine(torch.nn.Sequential(neuron, fc), "event")
    assert neuron.emit_events
    built = []
    monkeypatch.setattr(engine, "_events", lambda mask, real=engine._events: built.append(1) or real(mask))
    x = inputs(4, 3, 10, 64)
    with torch.no_grad():
        s = neuron(x)
        y = fc(s)
        assert fc.last_path == "event" and not built  # no list built from the spikes: the neuron's was used
        assert torch.allclose(y, F.linear(s, fc.weight, fc.bias), rtol=0, atol=1e-5)
        s.mul_(0)  # changed in place: the remembered list is stale and must not be used
        assert torch.equal(fc(s), fc.bias.expand(4, 3, 10, 32)) and built
    with torch.inference_mode():  # no version counter: nothing remembered, the list is built, same numbers
        built.clear()
        s2 = neuron(x)
        assert torch.allclose(fc(s2), F.linear(s2, fc.weight, fc.bias), rtol=0, atol=1e-5) and built


@pytest.mark.parametrize("name", ["test_spikformer", "test_spikingformer"])
def test_models_on_the_event_engine_build_fewer_lists_and_give_the_same_logits(name, monkeypatch):
    from spikemask import engine
    from spikemask.engine import set_engine

    torch.manual_seed(0)
    model = sm.create_model(name)
    x = torch.poisson(torch.full((2, 3, 2, 32, 32), 0.4))
    make_active(model, x)
    model.eval()
    with torch.no_grad():
        ref = model(x)
    built = []
    monkeypatch.setattr(engine, "_events", lambda mask, real=engine._events: built.append(1) or real(mask))
    set_engine(model, "event")
    counts = {}
    for emit in (False, True):
        for m in model.modules():
            if hasattr(m, "emit_events"):
                m.emit_events = emit
        built.clear()
        with torch.no_grad():
            out = model(x)
        counts[emit] = len(built)
        assert torch.allclose(out, ref, rtol=0, atol=1e-4)
    assert counts[True] < counts[False]  # proj and fc2 (and Spikingformer's q/k/v, fc1) read a neuron's list


def test_a_mask_drawn_where_spikes_arrive_reuses_and_passes_on_the_event_list(monkeypatch):
    """neuron -> mask (draw="arriving") -> linear: the mask draws at the positions the neuron wrote and hands
    the kept ones to the linear, so no list is built at all; the masks are the ones drawn without the lists."""
    from spikemask import engine
    from spikemask.engine import Linear, set_engine
    from spikemask.masking import random_spike_mask

    neuron = make_neuron(sm.NeuronConfig())
    fc = Linear(64, 32, engine="event").eval()
    set_engine(torch.nn.Sequential(neuron, fc), "event")
    built = []
    monkeypatch.setattr(engine, "_events", lambda mask, real=engine._events: built.append(1) or real(mask))
    x = inputs(4, 3, 10, 64)
    with torch.no_grad():
        s = neuron(x)
        assert engine.known_positions(s) is not None
        masked = random_spike_mask(s, 0.6, draw="arriving", generator=torch.Generator().manual_seed(3))
        y = fc(masked)
        assert not built and fc.last_path == "event"
        assert torch.allclose(y, F.linear(masked, fc.weight, fc.bias), rtol=0, atol=1e-5)
        plain = s.clone()  # the same spikes without a list at hand: found here, the same draws
        assert engine.known_positions(plain) is None
        assert torch.equal(random_spike_mask(plain, 0.6, draw="arriving", generator=torch.Generator().manual_seed(3)),
                           masked)
        counts = s * 2  # not binary: the mask passes nothing on, the linear builds (and weights) its own list
        masked2 = random_spike_mask(counts, 0.6, draw="arriving", generator=torch.Generator().manual_seed(3))
        assert engine.known_positions(masked2) is None
        assert torch.equal(masked2, masked * 2)
        assert torch.allclose(fc(masked2), F.linear(masked2, fc.weight, fc.bias), rtol=0, atol=1e-5)
