"""Multi-step LIF / IF neurons against SpikingJelly and against plain autograd loops written here.

References: SpikingJelly 2.0.0 ``neuron.LIFNode`` / ``neuron.IFNode`` (step_mode 'm'), and the
equations of ../shared/spec/architectures.md, re-typed below as the most naive loop possible.
"""

from __future__ import annotations

import math
import re

import pytest
import torch

import spikemask as sm
from spikemask.neurons import make_neuron
from spikemask.surrogate import spike_fn, surrogate_grad

sj_neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
sj_surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")

T, SHAPE = 6, (3, 7)
LIF_PARAMS = [(2.0, 1.0, 0.0), (1.5, 0.7, -0.3), (3.0, 0.5, 0.2)]  # (tau, v_threshold, v_reset)


def _sj_surrogate(name: str):
    return sj_surrogate.Sigmoid(alpha=4.0) if name == "sigmoid" else sj_surrogate.ATan(alpha=2.0)


def _inputs(seed: int, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # mean 0.6, std 1.5: every neuron sees both silent and spiking steps
    return (torch.randn(T, *SHAPE, generator=g) * 1.5 + 0.6).to(dtype)


def _run(module, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes and d(sum(spikes * w))/dx."""
    x = x.clone().requires_grad_(True)
    s = module(x)
    (s * w).sum().backward()
    return s.detach(), x.grad


# ---- naive references: the docstring equations with plain autograd -------------------------------


def sigmoid_grad(u, alpha=4.0):
    sg = 1.0 / (1.0 + torch.exp(-alpha * u))
    return alpha * sg * (1.0 - sg)


def atan_grad(u, alpha=2.0):
    return (alpha / 2.0) / (1.0 + (math.pi * alpha * u / 2.0) ** 2)


class _Heaviside(torch.autograd.Function):
    """Θ(u) forward, a given derivative backward; independent of spikemask.surrogate."""

    @staticmethod
    def forward(ctx, u, kind):
        ctx.save_for_backward(u)
        ctx.kind = kind
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx, g):
        (u,) = ctx.saved_tensors
        return g * (sigmoid_grad(u) if ctx.kind == "sigmoid" else atan_grad(u)), None


def ref_lif(x, tau, v_th, v_reset, v_init, kind, detach_reset):
    v = torch.full_like(x[0], v_init)
    out = []
    for t in range(x.shape[0]):
        h = v + (x[t] - (v - v_reset)) / tau
        s = _Heaviside.apply(h - v_th, kind)
        sr = s.detach() if detach_reset else s
        v = h * (1 - sr) + v_reset * sr
        out.append(s)
    return torch.stack(out)


def ref_if(x, v_th, v_init, kind, detach_reset):
    v = torch.full_like(x[0], v_init)
    out = []
    for t in range(x.shape[0]):
        h = v + x[t]
        s = _Heaviside.apply(h - v_th, kind)
        sr = s.detach() if detach_reset else s
        v = h - v_th * sr
        out.append(s)
    return torch.stack(out)


# ---- against SpikingJelly ---------------------------------------------------------------------------


@pytest.mark.parametrize("detach_reset", [True, False])
@pytest.mark.parametrize("surrogate", ["sigmoid", "atan"])
@pytest.mark.parametrize("tau,v_th,v_reset", LIF_PARAMS)
def test_lif_matches_spikingjelly(tau, v_th, v_reset, surrogate, detach_reset):
    x = _inputs(1)
    w = _inputs(2)  # a non-uniform upstream gradient
    ref = sj_neuron.LIFNode(tau=tau, v_threshold=v_th, v_reset=v_reset, surrogate_function=_sj_surrogate(surrogate),
                            detach_reset=detach_reset, step_mode="m")
    ours = sm.LIF(sm.NeuronConfig(tau=tau, v_threshold=v_th, v_reset=v_reset, surrogate=surrogate,
                                  detach_reset=detach_reset))
    s_ref, g_ref = _run(ref, x, w)
    s, g = _run(ours, x, w)
    assert 0.1 < s_ref.mean() < 0.9  # the comparison covers both branches
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("detach_reset", [True, False])
@pytest.mark.parametrize("surrogate", ["sigmoid", "atan"])
@pytest.mark.parametrize("v_th", [1.0, 0.6])
def test_if_half_threshold_start_matches_spikingjelly(v_th, surrogate, detach_reset):
    x, w = _inputs(3), _inputs(4)
    ref = sj_neuron.IFNode(v_threshold=v_th, v_reset=None, surrogate_function=_sj_surrogate(surrogate),
                           detach_reset=detach_reset, step_mode="m")
    ref.v = v_th / 2  # SJ expands a float membrane to the input's shape on the first step
    ours = sm.IF(sm.NeuronConfig(kind="if", v_threshold=v_th, v_init=v_th / 2, surrogate=surrogate,
                                 detach_reset=detach_reset))
    s_ref, g_ref = _run(ref, x, w)
    s, g = _run(ours, x, w)
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-6)
    # the initial membrane really matters on these inputs (so the check above is not vacuous)
    s_zero = sm.IF(sm.NeuronConfig(kind="if", v_threshold=v_th, v_init=0.0))(x)
    assert not torch.equal(s_zero, s)
    # and SJ really started from v_th / 2: the hand loop from v_th / 2 agrees
    assert torch.equal(ref_if(x, v_th, v_th / 2, surrogate, detach_reset).detach(), s_ref)


# ---- against the hand-written loops -----------------------------------------------------------------


@pytest.mark.parametrize("detach_reset", [True, False])
@pytest.mark.parametrize("surrogate", ["sigmoid", "atan"])
@pytest.mark.parametrize(
    "tau,v_th,v_reset,v_init", [(2.0, 1.0, 0.0, None), (1.5, 0.7, -0.3, 0.4), (4.0, 0.5, 0.2, None)]
)
def test_lif_matches_hand_loop(tau, v_th, v_reset, v_init, surrogate, detach_reset):
    """Float64 so the tolerance can be tight; covers the fused (detached) and the autograd path."""
    x, w = _inputs(5, torch.float64), _inputs(6, torch.float64)
    cfg = sm.NeuronConfig(tau=tau, v_threshold=v_th, v_reset=v_reset, v_init=v_init, surrogate=surrogate,
                          detach_reset=detach_reset)
    start = v_reset if v_init is None else v_init  # LIF starts at V_reset unless told otherwise
    s, g = _run(sm.LIF(cfg), x, w)
    s_ref, g_ref = _run(lambda z: ref_lif(z, tau, v_th, v_reset, start, surrogate, detach_reset), x, w)
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("detach_reset", [True, False])
@pytest.mark.parametrize("v_init", [None, 0.5])
def test_if_matches_hand_loop(v_init, detach_reset):
    x, w = _inputs(7, torch.float64), _inputs(8, torch.float64)
    cfg = sm.NeuronConfig(kind="if", v_threshold=1.0, v_init=v_init, detach_reset=detach_reset)
    s, g = _run(sm.IF(cfg), x, w)
    s_ref, g_ref = _run(lambda z: ref_if(z, 1.0, v_init or 0.0, "sigmoid", detach_reset), x, w)
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)


def test_non_detached_reset_changes_the_gradient():
    """The reset path carries gradient when not detached: the two settings must differ (else a test above is blind)."""
    x, w = _inputs(9, torch.float64), _inputs(10, torch.float64)
    _, g_det = _run(sm.LIF(sm.NeuronConfig(detach_reset=True)), x, w)
    _, g_full = _run(sm.LIF(sm.NeuronConfig(detach_reset=False)), x, w)
    assert not torch.allclose(g_det, g_full)


def test_fused_sequence_gradient_long_sequence():
    """T = 8 with a loss on the last steps only: gradient must flow back through the recurrence."""
    g = torch.Generator().manual_seed(11)
    x = (torch.randn(8, 4, 5, generator=g, dtype=torch.float64) * 1.2 + 0.8)
    w = torch.zeros_like(x)
    w[-2:] = 1.0  # only late spikes in the loss
    s, grad = _run(sm.LIF(sm.NeuronConfig(detach_reset=True)), x, w)
    s_ref, grad_ref = _run(lambda z: ref_lif(z, 2.0, 1.0, 0.0, 0.0, "sigmoid", True), x, w)
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-10, atol=1e-12)
    assert grad[0].abs().sum() > 0  # early inputs get gradient only through the membrane carry


@pytest.mark.parametrize("kind", ["lif", "if"])
def test_non_contiguous_input(kind):
    """Time not outermost in memory (a permuted tensor) and a stride-0 (expanded) input: same as contiguous."""
    neuron = make_neuron(sm.NeuronConfig(kind=kind, v_init=0.5 if kind == "if" else None))
    g = torch.Generator().manual_seed(13)
    base = torch.randn(4, 5, T, generator=g) * 1.5 + 0.6
    permuted = base.permute(2, 0, 1)  # [T, 4, 5], non-contiguous
    assert torch.equal(neuron(permuted), neuron(permuted.contiguous()))
    expanded = base[..., 0].unsqueeze(0).expand(T, 4, 5)
    assert torch.equal(neuron(expanded), neuron(expanded.contiguous()))
    w = torch.randn(T, 4, 5, generator=g)
    _, grad_p = _run(lambda z: neuron(z.permute(2, 0, 1)), base, w)
    _, grad_c = _run(neuron, permuted.contiguous(), w)
    torch.testing.assert_close(grad_p.permute(2, 0, 1), grad_c)


def test_neuron_is_stateless_between_calls():
    x = _inputs(12)
    lif = sm.LIF(sm.NeuronConfig())
    assert torch.equal(lif(x), lif(x))


def test_make_neuron_overrides():
    n = make_neuron(sm.NeuronConfig(), v_threshold=0.5)
    assert isinstance(n, sm.LIF) and n.cfg.v_threshold == 0.5
    assert isinstance(make_neuron(sm.NeuronConfig(kind="if")), sm.IF)


# ---- errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [sm.LIF, sm.IF])
@pytest.mark.parametrize("shape", [(), (5,), (0, 3)])
def test_input_without_time_dimension(cls, shape):
    kind = "lif" if cls is sm.LIF else "if"
    with pytest.raises(ValueError, match=r"\[T, \.\.\.\].*" + re.escape(str(tuple(shape)))):
        cls(sm.NeuronConfig(kind=kind))(torch.zeros(shape))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(tau=1.0), "tau must be > 1"),
        (dict(tau=0.5), "tau must be > 1"),
        (dict(v_threshold=0.0), "v_threshold must be > 0"),
        (dict(v_threshold=-1.0), "v_threshold must be > 0"),
        (dict(surrogate="relu"), "'relu' unknown; valid: sigmoid, atan"),
        (dict(kind="lf"), "kind must be 'lif' or 'if'"),
        (dict(alpha=0.0), "alpha must be > 0"),
    ],
)
def test_neuron_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        sm.NeuronConfig(**kwargs)


def test_if_ignores_tau():
    sm.NeuronConfig(kind="if", tau=1.0)  # tau is a LIF parameter: no error for IF


# ---- surrogates ---------------------------------------------------------------------------------------


GRID = torch.linspace(-3, 3, 601, dtype=torch.float64)


@pytest.mark.parametrize("alpha", [4.0, 2.0])
def test_sigmoid_surrogate_formula(alpha):
    sig = 1.0 / (1.0 + torch.exp(-alpha * GRID))
    torch.testing.assert_close(surrogate_grad(GRID, "sigmoid", alpha), alpha * sig * (1 - sig), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("alpha", [2.0, 3.0])
def test_atan_surrogate_formula(alpha):
    expected = (alpha / 2) / (1 + (math.pi * alpha * GRID / 2) ** 2)
    torch.testing.assert_close(surrogate_grad(GRID, "atan", alpha), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["sigmoid", "atan"])
def test_surrogates_match_spikingjelly_autograd(name):
    x = GRID.float().clone().requires_grad_(True)
    s_ref = _sj_surrogate(name)(x)
    s_ref.sum().backward()
    g_ref = x.grad.clone()
    x.grad = None
    s = spike_fn(x, name)  # default alpha: SJ's defaults (4 for sigmoid, 2 for atan)
    s.sum().backward()
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(x.grad, g_ref, rtol=1e-6, atol=1e-7)


def test_surrogate_unknown_kind():
    with pytest.raises(ValueError, match="unknown surrogate 'relu'"):
        surrogate_grad(GRID, "relu", 1.0)
    with pytest.raises(ValueError, match="unknown surrogate 'relu'"):
        spike_fn(GRID, "relu")



@pytest.mark.parametrize("kind,tau,v_th,v_reset", [("lif", *p) for p in LIF_PARAMS] + [("if", 2.0, 1.0, 0.0)])
@pytest.mark.parametrize("T", [1, 5])
def test_inference_path_equals_the_autograd_path_and_spikingjelly(kind, tau, v_th, v_reset, T):
    """Without autograd the neurons run a separate allocation-free loop (one membrane updated in place): the
    same spikes as the autograd path and as SpikingJelly, at T = 1, batch 1, and for all-zero / all-firing
    inputs."""
    cfg = sm.NeuronConfig(kind=kind, tau=tau, v_threshold=v_th, v_reset=v_reset)
    neuron = make_neuron(cfg)
    if kind == "lif":
        ref = sj_neuron.LIFNode(tau=tau, v_threshold=v_th, v_reset=v_reset, detach_reset=True, step_mode="m")
    else:
        ref = sj_neuron.IFNode(v_threshold=v_th, v_reset=None, detach_reset=True, step_mode="m")
    g = torch.Generator().manual_seed(T)
    for x in (torch.randn(T, 1, 7, generator=g) * 2, torch.zeros(T, 3, 4), torch.full((T, 3, 4), 10.0)):
        with torch.no_grad():
            fast = neuron(x)
        slow = neuron(x.clone().requires_grad_()).detach()
        ref.reset()
        assert torch.equal(fast, slow) and torch.equal(fast, ref(x))
    assert fast.sum() > 0  # the last input, 10 at every step, fires at the first step (the check can tell)
    with torch.no_grad():
        assert neuron(torch.zeros(T, 3, 4)).sum() == 0


def test_lif_spikes_equal_spikingjelly_bit_for_bit_at_the_threshold():
    """SpikingJelly charges ``v + (x - v) / tau``; spikemask does the same operations in the same order. Other
    algebraically equal forms (``lerp(v, x, 1/tau)``, ``x / tau + v (1 - 1/tau)``) round differently, which
    decides the spike when the membrane lands within an ulp of the threshold: a million step-2 inputs put it
    there on purpose (about 3 % of them straddle the threshold under the other forms). Inference and autograd
    paths, tau 2."""
    g = torch.Generator().manual_seed(7)
    x0 = torch.rand(1_000_000, generator=g) * 1.9  # step 1 stays below threshold: V = x0 / 2
    x1 = 2.0 - x0 / 2 + (torch.rand(1_000_000, generator=g) - 0.5) * 1e-6  # step 2: H within ulps of 1
    x = torch.stack([x0, x1])
    ref = sj_neuron.LIFNode(tau=2.0, v_threshold=1.0, v_reset=0.0, detach_reset=True, step_mode="m")
    expected = ref(x)
    neuron = make_neuron(sm.NeuronConfig(kind="lif", tau=2.0))
    with torch.no_grad():
        assert torch.equal(neuron(x), expected)
    assert torch.equal(neuron(x.clone().requires_grad_()).detach(), expected)
    other = (torch.lerp(x0 / 2, x1, 0.5) >= 1.0).float()  # the check can tell the forms apart
    assert (other != expected[1]).sum() > 1000
