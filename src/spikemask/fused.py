"""BatchNorm -> spiking neuron (-> max-pool) as one autograd node that saves only the BatchNorm's input.

In training, Spikformer's tokenizer stage ``conv -> BN -> LIF -> MaxPool`` keeps four activations per stage
for the backward pass: the BN input, the neuron's membrane ``H``, the pool's input spikes and its int64
indices (at the 128² stem: 32 + 32 + 32 + 16 MiB per sample at T 16). Autograd needs all of them because the
three are separate nodes. Here the three run as one node that saves the BN input alone (the BN would save
it anyway) and recomputes the rest in its backward pass: the BN output with the same batch statistics, the
membrane and spikes by the neuron's forward loop, the pool's indices by the same pooling. The recomputed
tensors are bit-identical to the forward pass's (the same deterministic ops on the same input), so spikes,
gradients and running statistics equal the unfused modules' exactly (tested), at about a quarter of the
activation memory of these layers and one extra elementwise forward of them in the backward pass.

Used by :class:`~spikemask.models.tokenizers.ConvBNLIF` in training when ``TransformerConfig.fuse_bn_lif``
(default on) and nothing observes the three modules (no hooks): evaluation, the energy counter and probes
run the modules one by one, so every hook sees what it always saw.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .neurons import IF, LIF, SpikingNeuron, multi_step_backward, multi_step_with_h

__all__ = ["bn_neuron_pool", "can_fuse"]

_POOL = dict(kernel_size=3, stride=2, padding=1)  # the tokenizers' MaxPool2d(3, 2, 1)


def can_fuse(bn: nn.Module, neuron: nn.Module, pool: nn.Module | None, x: torch.Tensor | None = None) -> bool:
    """Whether ``bn -> neuron (-> pool)`` may run fused now: training with autograd, a plain BatchNorm2d with
    affine parameters, a LIF or IF neuron with a detached reset, the tokenizers' max-pool, an input ``x`` of
    the BN's dtype (autocast's bf16 activations take the modules' own mixed-precision paths), and no hooks
    that would miss the modules' own calls."""
    if not (bn.training and torch.is_grad_enabled() and type(bn) is nn.BatchNorm2d and bn.affine):
        return False
    if x is not None and x.dtype != bn.weight.dtype:
        return False
    if type(neuron) not in (LIF, IF) or not neuron.cfg.detach_reset:
        return False
    if pool is not None and (type(pool) is not nn.MaxPool2d or pool.return_indices
                             or (pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode)
                             != (3, 2, 1, 1, False)):
        return False
    modules = [m for m in (bn, neuron, pool) if m is not None]
    hooked = any(m._forward_hooks or m._forward_pre_hooks for m in modules)
    return not hooked and not nn.modules.module._global_forward_hooks \
        and not nn.modules.module._global_forward_pre_hooks


def _bn_factor(bn: nn.BatchNorm2d) -> float:
    """The running-statistics momentum of this call, as ``nn.BatchNorm2d.forward`` computes it."""
    if not bn.track_running_stats:
        return 0.0
    bn.num_batches_tracked.add_(1)
    return 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum


class _BNNeuronPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, factor, eps, dynamics, surrogate, pool):
        x4 = x.flatten(0, 1)  # [T*B, C, H, W]
        y4, _, _ = torch.native_batch_norm(x4, weight, bias, running_mean, running_var, True, factor, eps)
        spikes = multi_step_with_h(y4.view(x.shape), *dynamics)[0]  # H is dropped: recomputed in backward
        out = spikes
        if pool:
            out = F.max_pool2d(spikes.flatten(0, 1), **_POOL)
            out = out.view(*x.shape[:3], *out.shape[-2:])
        ctx.save_for_backward(x, weight, bias)
        ctx.cfg = (eps, dynamics, surrogate, pool)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, bias = ctx.saved_tensors
        eps, dynamics, surrogate, pool = ctx.cfg
        x4 = x.flatten(0, 1)
        # the same batch statistics and output as the forward pass (same op, same input; no running update)
        y4, mean, invstd = torch.native_batch_norm(x4, weight, bias, None, None, True, 0.0, eps)
        spikes, h_seq = multi_step_with_h(y4.view(x.shape), *dynamics)
        del y4
        if pool:
            s4 = spikes.flatten(0, 1)
            _, indices = F.max_pool2d(s4, **_POOL, return_indices=True)
            grad_s = torch.ops.aten.max_pool2d_with_indices_backward(
                grad_out.flatten(0, 1), s4, [3, 3], [2, 2], [1, 1], [1, 1], False, indices).view(x.shape)
            del indices
        else:
            grad_s = grad_out
        del spikes
        leak, v_th, _, _, hard_reset = dynamics
        grad_y = multi_step_backward(h_seq, grad_s, leak, v_th, *surrogate, hard_reset)
        del h_seq, grad_s
        grad_x4, grad_w, grad_b = torch.ops.aten.native_batch_norm_backward(
            grad_y.flatten(0, 1), x4, weight, None, None, mean, invstd, True, eps, list(ctx.needs_input_grad[:3]))
        return (None if grad_x4 is None else grad_x4.view(x.shape)), grad_w, grad_b, *(None,) * 7


def bn_neuron_pool(x: torch.Tensor, bn: nn.BatchNorm2d, neuron: SpikingNeuron,
                   pool: nn.MaxPool2d | None) -> torch.Tensor:
    """``pool(neuron(bn(x)))`` over time-first frames ``x [T, B, C, H, W]`` as one node (module docstring);
    the caller checks :func:`can_fuse` first."""
    factor = _bn_factor(bn)
    c = neuron.cfg
    return _BNNeuronPool.apply(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, factor, bn.eps,
                               neuron.dynamics(), (c.surrogate, c.surrogate_alpha), pool is not None)
