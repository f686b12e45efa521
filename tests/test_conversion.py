"""QCFS, the IF neurons it becomes, the converter and MST's Swin-T(BN): values, gradients, dynamics against
independent step-by-step computations, convergence to the ANN, masks, checkpoints and parameter counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import spikemask as sm
from spikemask.conversion import QCFS, ConversionError, StepIF, convert, quantise, validate
from spikemask.masking import SpikeMask
from spikemask.train import load_model, save_checkpoint

# ---------------------------------------------------------------- QCFS


def reference_qcfs(z: np.ndarray, lam: float, L: int, shift: float = 0.5) -> np.ndarray:
    """λ clip(floor(z L / λ + φ) / L, 0, 1), written out in numpy."""
    return lam * np.clip(np.floor(z * L / lam + shift) / L, 0.0, 1.0)


@pytest.mark.parametrize("L,lam", [(16, 2.0), (4, 0.7), (1, 3.0)])
def test_qcfs_values(L, lam):
    z = np.linspace(-2, 5, 1001)
    ours = QCFS(L, lam)(torch.tensor(z, dtype=torch.float64).float()).detach().numpy()
    assert np.allclose(ours, reference_qcfs(z, lam, L), atol=1e-5)
    levels = np.unique(np.round(ours / lam * L, 4))
    assert set(levels) <= set(range(L + 1)) and 0 in levels and L in levels


def test_qcfs_gradients_are_straight_through_inside_and_zero_outside():
    lam, L = 2.0, 8
    z = torch.tensor([-0.5, 0.1, 0.77, 1.3, 1.99, 2.5, 4.0], requires_grad=True)
    q = QCFS(L, lam)
    q(z).sum().backward()
    u = z.detach() * L / lam + 0.5
    inside = (u.floor() / L >= 0) & (u.floor() / L <= 1)  # the clip leaves the value as it is (bounds included)
    # d/dz: 1 where the clip is inactive (the floor passes its gradient straight through), else 0
    assert torch.equal(z.grad, inside.float())
    assert z.grad.tolist() == [0, 1, 1, 1, 1, 0, 0]
    # d/dλ: floor(u) / L - z / λ inside, 1 where clipped at λ, 0 where clipped at 0 (derived by hand)
    expected = torch.where(inside, u.floor() / L - z.detach() / lam, (u.floor() / L > 1).float())
    assert float(q.lam.grad) == pytest.approx(float(expected.sum()), abs=1e-5)


def test_quantise_replaces_named_activations_and_refuses_others():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU6(), nn.Linear(8, 2), nn.GELU())
    assert quantise(net, levels=4) == ["1", "3"]
    assert isinstance(net[1], QCFS) and net[1].levels == 4 and isinstance(net[3], QCFS)
    with pytest.raises(sm.config.ConfigError, match="'5' is a GELU, not an activation QCFS can replace"):
        quantise(net, names=["5"])
    with pytest.raises(sm.config.ConfigError, match="has no module 'nope'"):
        quantise(net, names=["nope"])


# ---------------------------------------------------------------- the IF neuron


def reference_if(z_steps: list[np.ndarray], theta: float) -> list[np.ndarray]:
    """v0 = θ/2; v += z; s = v >= θ; v -= θ s; out = θ s: one line per step."""
    v, outs = np.full_like(z_steps[0], theta / 2), []
    for z in z_steps:
        v = v + z
        s = (v >= theta).astype(float)
        v = v - theta * s
        outs.append(theta * s)
    return outs


def test_if_dynamics_match_an_independent_step_by_step_computation():
    rng = np.random.default_rng(0)
    zs = [rng.normal(0.3, 0.8, size=(5, 7)) for _ in range(20)]
    neuron = StepIF(1.7)
    ours = [neuron(torch.tensor(z, dtype=torch.float32)).numpy() for z in zs]
    for a, b in zip(ours, reference_if(zs, 1.7)):
        assert np.allclose(a, b)
    neuron.reset_state()
    assert np.allclose(neuron(torch.tensor(zs[0], dtype=torch.float32)).numpy(), reference_if(zs[:1], 1.7)[0])


def test_if_dynamics_match_spikingjelly():
    sj = pytest.importorskip("spikingjelly.activation_based.neuron")
    torch.manual_seed(0)
    theta = 1.3
    zs = torch.randn(30, 4, 6) * 0.6 + 0.2
    ref = sj.IFNode(v_threshold=1.0, v_reset=None)  # the QCFS code's neuron: fed z/θ, output x θ
    ref(torch.full((4, 6), 0.5))  # its way to start the membrane at half the threshold
    ours = StepIF(theta)
    for z in zs:
        assert torch.allclose(ours(z), ref(z / theta) * theta)


def test_single_layer_converts_exactly_at_T_equal_L():
    """With constant input and T = L the spike count is floor(z L / λ + 1/2) clipped: QCFS itself."""
    z = torch.linspace(-1, 3, 401)
    for L, lam in ((8, 2.0), (16, 1.3)):
        net = nn.Sequential(QCFS(L, lam))
        assert torch.allclose(convert(net, T=L)(z), net(z), atol=1e-6)


def _calibrated_mlp(levels: int, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(16, 64), QCFS(levels, 1.0), nn.Linear(64, 64), QCFS(levels, 1.0), nn.Linear(64, 10))
    x = torch.rand(256, 16)
    with torch.no_grad():  # scale each layer so its activation sees inputs spread over [0, λ]
        h = x
        for i in (0, 2):
            pre = net[i](h)
            net[i].weight /= pre.std() / 0.5
            net[i].bias -= net[i](h).mean() - 0.4
            h = net[i + 1](net[i](h))
    return net, x


def test_converted_output_converges_to_the_ann_as_T_grows():
    limits = {}
    for levels in (8, 64):
        net, x = _calibrated_mlp(levels)
        ann = net(x).detach()
        steps = convert(net, T=512).forward_steps(x)  # [T, B, 10]: the running mean after every step, one pass
        err = [float((steps[t - 1] - ann).abs().mean()) for t in (4, 16, 64, 256, 512)]
        assert err[0] > 2 * err[-1] and err[1] > err[-1], err  # far closer after many steps than after few
        drift = float((steps[-1] - steps[255]).abs().mean())  # and the running mean settles
        assert drift < 0.25 * err[0], (drift, err)
        agree = float((steps[-1].argmax(-1) == ann.argmax(-1)).float().mean())
        assert agree > 0.9 and err[-1] < 0.1 * float(ann.abs().mean()), (levels, err, agree)
        limits[levels] = err[-1]
    # what remains is the ANN's own quantisation (IF rates are not quantised to L levels): finer L, smaller
    assert limits[64] < limits[8] / 3, limits


def test_the_converter_refuses_what_it_cannot_convert():
    with pytest.raises(ConversionError, match=r"cannot convert 1 \(GELU\)"):
        validate(nn.Sequential(nn.Linear(2, 2), nn.GELU(), QCFS()))
    with pytest.raises(ConversionError, match="unquantised ReLU: quantise the model first"):
        validate(nn.Sequential(QCFS(), nn.ReLU()))
    with pytest.raises(ConversionError, match="max-pooling of spikes"):
        validate(nn.Sequential(QCFS(), nn.MaxPool2d(2)))
    with pytest.raises(ConversionError, match="no QCFS activation"):
        validate(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ConversionError, match="already a converted neuron"):
        validate(nn.Sequential(StepIF(1.0)))
    with pytest.raises(ValueError, match="T must be a positive integer"):
        convert(nn.Sequential(QCFS()), T=1).forward_steps(torch.zeros(2), T=0)
    report = validate(nn.Sequential(QCFS(), nn.Softmax(-1), nn.LayerNorm(3)))
    assert report.analog == {"1": "Softmax", "2": "LayerNorm"} and list(report.neurons) == ["0"]


# ---------------------------------------------------------------- MST's Swin-T(BN)


def swin_count(*, classes: int, mlp_bn: bool, C: int = 96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), w: int = 7,
               in_ch: int = 3, patch: int = 4, ratio: float = 4.0) -> tuple[int, int]:
    """(parameters, activations) of MST's Swin-T(BN), counted layer by layer from ../shared/spec/mst.md."""
    bn = lambda c: 2 * c  # noqa: E731
    params = (in_ch * C * patch * patch + C) + bn(C)  # patch embedding conv + BN
    acts = 1
    for s, (depth, h) in enumerate(zip(depths, heads)):
        c = C * 2 ** s
        hid = int(c * ratio)
        block = bn(c) + (c * 3 * c + 3 * c) + (2 * w - 1) ** 2 * h + (c * c + c) + bn(c)
        block += (c * hid + hid) + (hid * c + c) + ((bn(hid) + bn(c)) if mlp_bn else 0)
        params += depth * block
        acts += depth * 10  # shortcut1, q, k, v, attn, attn_v, proj, shortcut2, fc1, fc2
        if s < len(depths) - 1:
            params += bn(4 * c) + 4 * c * 2 * c
            acts += 1
    final = C * 2 ** (len(depths) - 1)
    params += bn(final) + final * classes + classes  # LayerNorm + head
    return params + acts, acts  # one λ per QCFS


@pytest.mark.parametrize("name,classes,mlp_bn", [("swin_t_bn_cifar", 10, False), ("swin_t_bn_imagenet", 1000, True)])
def test_swin_t_parameter_counts(name, classes, mlp_bn):
    with torch.device("meta"):
        model = sm.create_model(name)
    params, acts = swin_count(classes=classes, mlp_bn=mlp_bn)
    assert sm.count_parameters(model) == params
    assert sum(isinstance(m, QCFS) for m in model.modules()) == acts == 124  # ../shared/spec/mst.md
    with torch.device("meta"):
        c100 = sm.create_model("swin_t_bn_cifar", num_classes=100)
    assert round(sm.count_parameters(c100) / 1e6, 1) == 27.6  # the paper's CIFAR figure


def test_swin_shapes_gradients_and_shift_masks():
    torch.manual_seed(0)
    model = sm.create_model("test_swin", mask={"ratio": 0.3})
    x = torch.rand(4, 1, 16, 16)
    y = model(x)
    assert y.shape == (4, 10)
    y.sum().backward()
    lams = [m.lam for m in model.modules() if isinstance(m, QCFS)]
    assert all(lam.grad is not None for lam in lams) and any(float(lam.grad) != 0 for lam in lams)
    blocks = [b for layer in model.layers for b in layer.blocks]
    assert [b.shift for b in blocks] == [0, 1, 0, 0]  # odd blocks shift; a 2x2 stage has one window: no shift
    with pytest.raises(ValueError, match=r"expects \[B, 1, 16, 16\]"):
        model(torch.rand(2, 4, 1, 16, 16))


def test_swin_masks_sites_blocks_and_refuses_shared_masks():
    model = sm.create_model("test_swin", mask={"ratio": 0.5, "sites": ["attn.q", "mlp.hidden"], "blocks": [0, 1]})
    on = [(m.site, m.block) for m in model.modules() if isinstance(m, SpikeMask) and m.ratio > 0]
    assert sorted(on) == [("attn.q", 0), ("attn.q", 1), ("mlp.hidden", 0), ("mlp.hidden", 1)]
    assert model.mask_blocks() == [f"layers.{s}.blocks.{b}" for s in (0, 1) for b in (0, 1)]
    sm.apply_rsm(model, ratio=0.0, sites=["attn.k"], blocks=None, site_ratios={})
    model.set_mask(sm.MaskConfig(sites=("attn.k",), block_ratios={2: 0.4, 3: 0.6}))
    ratios = {m.block: m.ratio for m in model.modules() if isinstance(m, SpikeMask) and m.site == "attn.k"}
    assert ratios == {0: 0.0, 1: 0.0, 2: 0.4, 3: 0.6}
    with pytest.raises(ValueError, match="mask block 4 does not exist"):
        model.set_mask(sm.MaskConfig(ratio=0.2, blocks=(4,)))
    with pytest.raises(ValueError, match="share_over_time"):
        sm.create_model("test_swin", mask={"ratio": 0.2, "share_over_time": True})


def test_converted_swin_saves_loads_and_runs_step_by_step(tmp_path):
    torch.manual_seed(0)
    ann = sm.create_model("test_swin", mask={"ratio": 0.25, "seed": 3}).eval()
    x = torch.rand(3, 1, 16, 16)
    snn = convert(ann, T=6)
    assert snn.config.converted and not ann.config.converted  # a converted copy: the ANN is untouched
    assert sum(isinstance(m, StepIF) for m in snn.modules()) == 1 + 4 * 10 + 1
    thresholds = {n: float(m.threshold) for n, m in snn.named_modules() if isinstance(m, StepIF)}
    assert thresholds == {n: float(m.lam.detach()) for n, m in ann.named_modules() if isinstance(m, QCFS)}
    steps = snn.forward_steps(x)
    assert steps.shape == (6, 3, 10)
    snn.reseed_masks(7)
    first = snn(x)
    loaded, state = load_model(save_checkpoint(tmp_path / "snn.pt", snn))
    assert state["model_config"]["converted"] is True and loaded.config.T == 6
    loaded.eval().reseed_masks(7)
    assert torch.equal(loaded(x), first)  # the same masks, thresholds and weights: the same output
    with pytest.raises(ConversionError, match="is an ANN"):
        ann.forward_steps(x)


def test_masks_on_a_model_you_bring():
    """Any nn.Module: RSM on the outputs of the modules named (patterns allowed), no module replaced."""
    net, x = _calibrated_mlp(8)
    snn = convert(net, T=16)  # a SpikingRunner around a copy of the Sequential
    plain = snn.forward_steps(x)
    sm.apply_rsm(snn, ratio=0.6, sites=["net.[13]"], seed=0)
    masks = [m for m in snn.modules() if isinstance(m, SpikeMask)]
    assert [m.site for m in masks] == ["net.1", "net.3"] and all(m.ratio == 0.6 for m in masks)
    seen = []
    hook = masks[0].register_forward_hook(lambda m, a, out: seen.append((a[0], out)))
    masked = snn.forward_steps(x)
    hook.remove()
    before = sum(float((a != 0).sum()) for a, _ in seen)
    after = sum(float((o != 0).sum()) for _, o in seen)
    assert len(seen) == 16 and 1 - after / before == pytest.approx(0.6, abs=0.02)  # a fresh mask at every step
    assert not torch.equal(masked, plain)
    assert set(snn.state_dict()) == set(convert(net, T=16).state_dict())  # nothing replaced or added
    sm.apply_rsm(snn, ratio=0.0)  # re-applying keeps the sites, replaces the hooks
    assert torch.equal(snn.forward_steps(x), plain)
    with pytest.raises(ValueError, match="no module of SpikingRunner matches 'net.9'"):
        sm.apply_rsm(snn, ratio=0.5, sites=["net.9"])
    with pytest.raises(TypeError, match="names no Random Spike Masking sites"):
        sm.apply_rsm(nn.Linear(2, 2), ratio=0.5)


@pytest.mark.parametrize("name", ["test_swin", "test_resnet", "test_vgg"])
def test_a_converted_config_needs_qcfs_activations(name):
    with pytest.raises(ValueError, match="model.converted needs act.kind 'qcfs'"):
        sm.create_model(name, converted=True, act={"kind": "relu"})
    assert sm.create_model(name, act={"kind": "relu"}).config.act.kind == "relu"  # a plain ANN is fine
