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
