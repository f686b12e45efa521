"""The fused BN -> neuron -> max-pool node (spikemask.fused): the same numbers as the three modules run one by
one (outputs, every gradient, running statistics), less memory saved for backward, and the unfused path
wherever something observes the modules or autograd is off."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import spikemask as sm
from spikemask.fused import bn_neuron_pool, can_fuse
from spikemask.neurons import make_neuron


def parts(kind="lif", pool=True, momentum=0.1, C=6, detach_reset=True):
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(C, momentum=momentum)
    nn.init.uniform_(bn.weight, 0.5, 1.5)
    nn.init.uniform_(bn.bias, -0.2, 0.6)
    neuron = make_neuron(sm.NeuronConfig(kind=kind, detach_reset=detach_reset))
    return bn, neuron, (nn.MaxPool2d(3, 2, 1) if pool else None)


def unfused(x, bn, neuron, pool):
    T, B = x.shape[:2]
    y = bn(x.flatten(0, 1)).view(x.shape)
    s = neuron(y)
    if pool is None:
        return s
    out = pool(s.flatten(0, 1))
    return out.view(T, B, *out.shape[1:])


def saved_bytes(fn):
    sizes = []

    def pack(t):
        sizes.append(t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(sizes)


@pytest.mark.parametrize("kind", ["lif", "if"])
@pytest.mark.parametrize("pool", [True, False])
@pytest.mark.parametrize("shape", [(4, 3, 6, 9, 9), (1, 1, 6, 8, 8)], ids=["T4", "T1-batch1"])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_fused_equals_the_modules_exactly(kind, pool, shape, momentum):
    bn_a, neuron, mp = parts(kind, pool, momentum)
    bn_b = copy.deepcopy(bn_a)
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(shape, generator=g) * 2).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    for _ in range(2):  # twice: the running statistics and num_batches_tracked move alike
        assert can_fuse(bn_a, neuron, mp)
        out_a = bn_neuron_pool(x, bn_a, neuron, mp)
        out_b = unfused(x2, bn_b, neuron, mp)
        assert torch.equal(out_a, out_b) and out_b.sum() > 0
        grad = torch.randn(out_a.shape, generator=g)
        out_a.backward(grad)
        out_b.backward(grad)
    assert torch.equal(x.grad, x2.grad)
    assert torch.equal(bn_a.weight.grad, bn_b.weight.grad) and torch.equal(bn_a.bias.grad, bn_b.bias.grad)
    for a, b in zip(bn_a.buffers(), bn_b.buffers()):
        assert torch.equal(a, b)


def test_silent_and_saturated_inputs_and_channels_last():
    bn_a, neuron, mp = parts()
    bn_b = copy.deepcopy(bn_a)
    for base in (torch.zeros(3, 2, 6, 8, 8), torch.full((3, 2, 6, 8, 8), 5.0)):
        x = base + torch.randn(base.shape) * 1e-3  # BN of a constant would be 0/0: a little noise
        x = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).view(x.shape).requires_grad_()
        x2 = x.detach().clone().requires_grad_()
        a, b = bn_neuron_pool(x, bn_a, neuron, mp), unfused(x2, bn_b, neuron, mp)
        assert torch.equal(a, b)
        a.sum().backward()
        b.sum().backward()
        assert torch.equal(x.grad, x2.grad)


def test_fused_saves_a_quarter_of_the_memory():
    bn, neuron, mp = parts(C=8)
    x = torch.randn(4, 2, 8, 16, 16, requires_grad=True)
    fused = saved_bytes(lambda: bn_neuron_pool(x, copy.deepcopy(bn), neuron, mp))
    plain = saved_bytes(lambda: unfused(x, copy.deepcopy(bn), neuron, mp))
    assert fused <= plain / 3  # BN input (+ two [C] parameters) vs BN input, H, spikes and int64 indices
    assert fused >= x.numel() * 4  # it does keep the BN input


def test_not_fused_where_something_observes_or_nothing_trains():
    bn, neuron, mp = parts()
    assert can_fuse(bn, neuron, mp)
    with torch.no_grad():
        assert not can_fuse(bn, neuron, mp)
    bn.eval()
    assert not can_fuse(bn, neuron, mp)
    bn.train()
    handle = neuron.register_forward_hook(lambda *a: None)  # e.g. the energy counter or a probe
    assert not can_fuse(bn, neuron, mp)
    handle.remove()
    assert not can_fuse(bn, make_neuron(sm.NeuronConfig(detach_reset=False)), mp)
    assert not can_fuse(bn, neuron, nn.MaxPool2d(2))
    assert can_fuse(bn, neuron, None)
    assert not can_fuse(bn, neuron, mp, torch.zeros(1, dtype=torch.bfloat16))  # autocast's activations
    assert can_fuse(bn, neuron, mp, torch.zeros(1))


@pytest.mark.parametrize("name", ["test_spikformer", "spikformer_2_64_ndigits"])
def test_whole_model_trains_identically_fused_or_not(name):
    torch.manual_seed(0)
    fused = sm.create_model(name)
    plain = copy.deepcopy(fused)
    for m in plain.sps.modules():
        if hasattr(m, "fuse"):
            m.fuse = False
    assert not sm.create_model(name, fuse_bn_lif=False).sps.stages[0].fuse
    x = torch.poisson(torch.full((fused.config.T, 4, 2, 32, 32), 0.6))
    kept = [saved_bytes(lambda m=m: copy.deepcopy(m).train()(x)) for m in (fused, plain)]
    assert kept[0] < 0.8 * kept[1]  # the fused stages really ran
    for model in (fused, plain):
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for _ in range(2):
            opt.zero_grad()
            F.cross_entropy(model(x), torch.arange(4)).backward()
            opt.step()
    for a, b in zip(fused.state_dict().values(), plain.state_dict().values()):
        assert torch.equal(a, b)
