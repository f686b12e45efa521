"""The event-driven engine (spikemask.engine): the gather-add equals F.linear on binary inputs of every
density and shape, falls back to dense where it must (non-binary input, training, autograd), picks per call
under ``auto``, and a whole model gives the same logits and the same energy counts under both engines."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import make_active
from torch import nn

import spikemask as sm
from spikemask.energy import measure_energy
from spikemask.engine import Linear, event_linear, event_list, is_binary, is_count, set_engine

FAMILIES = ("test_spikformer", "test_spikingformer", "test_saformer")


def spikes(*shape, density=0.2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < density).float()


def close(a, b, atol=1e-5):
    """Equal to float rounding: the gather-add sums in another order than the GEMM."""
    scale = max(1.0, float(b.abs().max())) if b.numel() else 1.0
    return torch.allclose(a, b, rtol=0, atol=atol * scale)


def layer(i=24, o=40, bias=True, engine="event", seed=0):
    torch.manual_seed(seed)
    return Linear(i, o, bias, engine=engine).eval()


@pytest.mark.parametrize("density", [0.0, 0.01, 0.1, 0.3, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("shape", [(2, 3, 5), (1, 1, 7), (1, 4), (3,)])  # [T, B, N] .., T = 1, batch 1, a vector
def test_event_linear_equals_dense(density, shape):
    torch.manual_seed(1)
    w, b = torch.randn(40, 24), torch.randn(40)
    x = spikes(*shape, 24, density=density)
    assert is_binary(x)
    y = event_linear(x, w, b)
    assert y.shape == (*shape, 40)
    assert close(y, F.linear(x, w, b))
    assert close(event_linear(x, w), F.linear(x, w))  # no bias


def test_all_zero_and_all_one_rows_in_one_input():
    w, b = torch.randn(16, 8), torch.randn(16)
    x = torch.zeros(4, 8)
    x[1] = 1.0
    x[3, ::2] = 1.0
    y = event_linear(x, w, b)
    assert torch.equal(y[0], b) and torch.equal(y[2], b)  # empty bags: bias only
    assert close(y, F.linear(x, w, b))


def test_event_list_layout():
    mask = torch.tensor([[0, 1, 1], [0, 0, 0], [1, 0, 1]], dtype=torch.bool)
    idx, off = event_list(mask)
    assert idx.tolist() == [1, 2, 0, 2] and off.tolist() == [0, 2, 2, 4]


def test_non_contiguous_inputs():
    m = layer()
    x = spikes(3, 24, 5, density=0.3).transpose(1, 2)  # [3, 5, 24], not contiguous
    assert not x.is_contiguous()
    with torch.no_grad():
        assert close(m(x), F.linear(x, m.weight, m.bias)) and m.last_path == "event"
        xs = spikes(4, 48, density=0.3)[:, ::2]  # strided columns
        assert close(m(xs), F.linear(xs, m.weight, m.bias)) and m.last_path == "event"


def test_real_valued_input_falls_back_to_dense_exactly():
    m = layer()
    with torch.no_grad():
        for x in (torch.randn(5, 24), spikes(5, 24).masked_fill(torch.eye(5, 24) > 0, 0.5),
                  spikes(5, 24) * 2 - spikes(5, 24, seed=1),  # negative counts are not spikes
                  spikes(5, 24).masked_fill(torch.eye(5, 24) > 0, float("nan")),
                  spikes(5, 24).masked_fill(torch.eye(5, 24) > 0, float("inf"))):
            assert not is_binary(x) and not is_count(x)
            assert torch.equal(m(x), F.linear(x, m.weight, m.bias)) or not torch.isfinite(x).all()
            assert m.last_path == "dense"


@pytest.mark.parametrize("engine", ["event", "auto"])
def test_spike_counts_take_the_weighted_gather(engine):
    """Spikformer's residual stream adds spikes: q/k/v and fc1 read whole numbers 0, 1, 2, ...; the event path
    weights each event by its count (embedding_bag per_sample_weights) and equals the dense product."""
    m = layer(engine=engine)
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 4, (2, 7, 24), generator=g).float() * spikes(2, 7, 24, density=0.1)
    assert is_count(x) and not is_binary(x)
    with torch.no_grad():
        assert close(m(x), F.linear(x, m.weight, m.bias)) and m.last_path == "event"
        x1 = torch.zeros(1, 1, 24)
        x1[0, 0, 3] = 5.0  # batch 1, T 1, one event of count 5
        assert close(m(x1), m.bias + 5 * m.weight[:, 3]) and m.last_path == "event"
        independent = torch.stack([sum((x[i, j, c] * m.weight[:, c] for c in range(24)), m.bias)
                                   for i in range(2) for j in range(7)]).view(2, 7, -1)
        assert close(m(x), independent)
        assert close(event_linear(x, m.weight, m.bias, reuse=False), independent)  # the function, too
        with pytest.raises(ValueError, match="needs spikes"):
            event_linear(torch.randn(3, 24), m.weight)


def test_training_and_autograd_run_dense_with_gradients():
    m = layer().train()
    x = spikes(6, 24)
    y = m(x)
    assert m.last_path == "dense"
    y.sum().backward()
    assert m.weight.grad is not None and m.weight.grad.abs().sum() > 0
    m.eval()
    m(x)  # eval but grad enabled and the weight requires grad: autograd would need the dense graph
    assert m.last_path == "dense"
    with torch.no_grad():
        m(x)
    assert m.last_path == "event"
    with torch.inference_mode():
        assert close(m(x), F.linear(x, m.weight, m.bias)) and m.last_path == "event"


def test_the_table_follows_weight_updates():
    m = layer()
    x = spikes(6, 24)
    with torch.no_grad():
        m(x)
        m.weight.mul_(2)  # in place, as an optimizer or load_state_dict does
        assert close(m(x), F.linear(x, m.weight, m.bias))
        m.weight = nn.Parameter(torch.randn_like(m.weight))  # replaced
        assert close(m(x), F.linear(x, m.weight, m.bias))


def test_auto_picks_by_density_per_call():
    m = layer(engine="auto")
    m.threshold = 0.25
    with torch.no_grad():
        m(spikes(8, 24, density=0.05))
        assert m.last_path == "event"
        m(spikes(8, 24, density=0.6))
        assert m.last_path == "dense"
        m(torch.zeros(8, 24))
        assert m.last_path == "event"
        m(torch.ones(8, 24))
        assert m.last_path == "dense"


def test_engine_options_are_validated_and_shown():
    with pytest.raises(ValueError, match="engine must be one of"):
        Linear(4, 4, engine="sparse")
    with pytest.raises(ValueError, match="event_threshold"):
        Linear(4, 4, engine="auto", threshold=1.5)
    with pytest.raises(ValueError):
        sm.create_model("test_spikformer", engine="fast")
    with pytest.raises(ValueError):
        sm.create_model("test_spikformer", event_threshold=-0.1)
    assert "engine" not in repr(Linear(4, 4)) and "engine=auto, threshold=0.1" in repr(Linear(4, 4, engine="auto",
                                                                                           threshold=0.1))


def test_default_engine_changes_nothing():
    torch.manual_seed(0)
    model = sm.create_model("test_spikformer")
    linears = [m for n, m in model.named_modules() if isinstance(m, Linear)]
    assert len(linears) == 6 and all(isinstance(m, nn.Linear) and m.engine == "dense" for m in linears)
    plain = nn.Linear(32, 32, bias=False)
    assert repr(model.blocks[0].attn.q) == repr(plain)
    assert set(model.state_dict()) == set(sm.create_model("test_spikformer", engine="event").state_dict())


def _pair(name, trained):
    """(dense model, event model with the same weights, input) for family ``name``, active on its input."""
    torch.manual_seed(0)
    model = sm.create_model(name)
    x = torch.poisson(torch.full((2, 3, 2, 32, 32), 0.4))
    make_active(model, x)
    if trained:  # two optimizer steps on random data, then fresh BN statistics
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for _ in range(2):
            loss = F.cross_entropy(model(x), torch.arange(3) % 10)
            opt.zero_grad()
            loss.backward()
            opt.step()
        make_active(model, x)
    event = sm.create_model(name, engine="event")
    event.load_state_dict(model.state_dict())
    return model.eval(), event.eval(), x


@pytest.mark.parametrize("trained", [False, True], ids=["random", "trained"])
@pytest.mark.parametrize("name", FAMILIES)
def test_model_logits_equal_under_both_engines(name, trained):
    dense, event, x = _pair(name, trained)
    with torch.no_grad():
        ref = dense(x)
        out = event(x)
        ref1, out1 = dense(x[:1, :1]), event(x[:1, :1])  # T = 1, batch 1
    paths = [m.last_path for m in event.modules() if isinstance(m, Linear)]
    # every projection reads spikes: binary, or counts in Spikformer's residual stream (q/k/v, fc1)
    assert paths and all(p == "event" for p in paths)
    assert torch.allclose(out, ref, rtol=0, atol=1e-4) and torch.allclose(out1, ref1, rtol=0, atol=1e-4)


def test_set_engine_switches_a_built_model():
    dense, _, x = _pair("test_spikingformer", False)
    with torch.no_grad():
        ref = dense(x)
        assert set_engine(dense, "event") == 6 + 5  # the linears and the tokenizer convolutions
        out = dense(x)
    assert all(m.last_path == "event" for m in dense.modules() if isinstance(m, Linear))  # all read spikes
    assert torch.allclose(out, ref, rtol=0, atol=1e-4)
    with pytest.raises(ValueError):
        set_engine(dense, "auto", threshold=2.0)


@pytest.mark.parametrize("name", FAMILIES)
def test_energy_counts_are_identical_under_both_engines(name):
    dense, event, x = _pair(name, False)
    a, b = measure_energy(dense, [x]), measure_energy(event, [x])
    for key in ("layers", "totals", "masks", "neurons", "additions"):
        assert a[key] == b[key], key


def test_engine_option_of_the_command_line(capsys):
    import json

    from spikemask.cli.main import main

    reports = []
    for engine in ([], ["--engine", "event"]):
        assert main(["energy", "--model", "test_spikingformer", "--dense", "--json", *engine]) == 0
        reports.append(json.loads(capsys.readouterr().out))
    assert reports[0]["totals"] == reports[1]["totals"]
    assert main(["energy", "--model", "test_resnet", "--dense", "--engine", "auto"]) == 2
    assert "--engine: engine 'auto' applies to the spiking transformers" in capsys.readouterr().err


def test_gpu_check_script_runs_here():
    """benchmarks/gpu_check.py is the one prepared run for a session lent a GPU; without CUDA it says so and
    measures nothing (with CUDA: its quick pass, every check ok)."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    args = [sys.executable, str(script)] + (["--quick", "--output", "-"] if torch.cuda.is_available() else [])
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    if not torch.cuda.is_available():
        assert "no CUDA device here" in r.stdout and "nothing measured" in r.stdout
    else:
        assert "FAILED" not in r.stdout


def test_the_event_cache_keeps_no_activation_alive():
    """The last input's events are cached for Q/K/V reuse; the input itself is held weakly (and its bool mask
    dropped once the list exists), so a finished forward frees its activations."""
    import gc
    import weakref

    for engine, density in (("event", 0.1), ("auto", 0.9)):  # the event path, and auto's dense decision
        m = layer(engine=engine)
        x = spikes(6, 24, density=density)
        alive = weakref.ref(x)
        with torch.no_grad():
            y = m(x)
        assert m.last_path == ("event" if engine == "event" else "dense")
        del x
        gc.collect()
        assert alive() is None and y.shape == (6, 40)
