"""Tokenizers: event frames or images ``[T, B, C, H, W]`` -> tokens ``[T, B, N, D]``.

All three have five 3x3 convolutions with channels C -> D/8 -> D/4 -> D/2 -> D -> D (so the same
parameters); they differ in where the neurons and max-pools sit, and so in what the stream carries:

* ``spikformer`` (Spikformer's SPS, 000 / Zhou et al. 2023): 4 x [conv -> BN -> LIF (-> MaxPool)], then the
  relative position embedding ``x + LIF(BN(conv(x)))``: integer spikes (0, 1, 2).
* ``spikingformer`` (Spiking Tokenizer, 004): conv -> BN, then 4 x [LIF (-> MaxPool) -> conv -> BN]
  (SPE without, SPED with the pool): every conv after the first sees spikes; the output is real (BN).
* ``saformer`` (SAFormer's SPS, 003, reconstructed from its prose): 4 x [conv -> BN (-> MaxPool) -> LIF]
  ("a spike neural layer immediately after the pooling"), then a fifth conv -> BN; its output is added
  to the spikes it read when ``sps_residual`` (as Spikformer's position embedding), else used alone.

``sps_pool[i]`` says whether stage i halves the grid (MaxPool 3/2/1): after the stage's neuron for
``spikformer`` and ``saformer``, before the next conv for ``spikingformer`` (same grid either way).

Random Spike Masking sites ``sps.conv1`` .. ``sps.conv4`` (:data:`TOKENIZER_SITES`): the spikes entering
conv k of the five (k = 1..4; conv 0 reads the input, not spikes), after any max-pool before it. Conv 4 is
Spikformer's position-embedding conv (its shortcut keeps the unmasked spikes), Spikingformer's last SPE conv,
SAFormer's fifth conv (likewise). Not default sites; outside the blocks, so ``mask.blocks`` does not gate them.
"""

from __future__ import annotations

import torch
from torch import nn

from ..engine import Conv2d as EventConv2d
from ..fused import bn_neuron_pool, can_fuse
from ..layers import seq_apply
from ..masking import SpikeMask
from ..neurons import NeuronConfig, make_neuron

__all__ = ["TOKENIZERS", "TOKENIZER_SITES", "SPS", "SpikingTokenizer", "SAFormerSPS", "build_tokenizer"]

TOKENIZER_SITES = ("sps.conv1", "sps.conv2", "sps.conv3", "sps.conv4")  # every tokenizer has all four


def _conv(c_in: int, c_out: int) -> nn.Conv2d:
    # the engine is set on the whole model after it is built (engine.set_engine): dense until then
    return EventConv2d(c_in, c_out, 3, 1, 1, bias=False)


def _pool(on: bool) -> nn.MaxPool2d | None:
    return nn.MaxPool2d(3, 2, 1) if on else None


def _site(conv: int) -> str | None:
    """The mask site on the input of conv ``conv`` (0..4); None for conv 0, which reads the input."""
    return TOKENIZER_SITES[conv - 1] if conv else None


def _mask(site: str | None) -> SpikeMask | None:
    return SpikeMask(site, feeds="conv") if site else None


def _tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(3).transpose(-1, -2).contiguous()  # [T, B, C, H, W] -> [T, B, N, D]


def _apply(module: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    return x if module is None else seq_apply(module, x)


def _masked(mask: SpikeMask | None, x: torch.Tensor) -> torch.Tensor:
    return x if mask is None else mask(x)  # time-first [T, B, C, H, W]: a mask shared over T needs the T axis


class ConvBNLIF(nn.Module):
    """Spikformer's stage: [mask ->] conv3x3 (no bias) -> BN -> LIF [-> MaxPool(3, 2, 1)] on ``[T, B, C, H, W]``.

    ``fuse``: in training, BN -> LIF -> MaxPool run as one autograd node saving only the BN input
    (:mod:`spikemask.fused`: the same numbers, a quarter of these layers' activation memory)."""

    def __init__(self, c_in: int, c_out: int, neuron: NeuronConfig, pool: bool, site: str | None = None,
                 fuse: bool = True) -> None:
        super().__init__()
        self.mask = _mask(site)
        self.conv = _conv(c_in, c_out)
        self.bn = nn.BatchNorm2d(c_out)
        self.lif = make_neuron(neuron)
        self.pool = _pool(pool)
        self.fuse = fuse

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = seq_apply(self.conv, _masked(self.mask, x))  # [T, B, C_out, H, W]
        if self.fuse and can_fuse(self.bn, self.lif, self.pool, x):
            return bn_neuron_pool(x, self.bn, self.lif, self.pool)
        return _apply(self.pool, self.lif(seq_apply(self.bn, x)))


class SPS(nn.Module):
    """Spikformer's Spiking Patch Splitting; tokens are integer-valued (stage spikes + position spikes)."""

    def __init__(self, chans: list[int], neuron: NeuronConfig, pools: tuple[bool, ...], fuse: bool = True,
                 **_) -> None:
        super().__init__()
        self.stages = nn.ModuleList(ConvBNLIF(chans[i], chans[i + 1], neuron, pools[i], _site(i), fuse)
                                    for i in range(4))
        self.rpe = ConvBNLIF(chans[4], chans[4], neuron, pool=False, site=_site(4), fuse=fuse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return _tokens(x + self.rpe(x))  # values in {0, 1, 2}


class ConvBN(nn.Module):
    """[mask ->] conv3x3 -> BN on ``[T, B, C, H, W]``."""

    def __init__(self, c_in: int, c_out: int, site: str | None = None) -> None:
        super().__init__()
        self.mask = _mask(site)
        self.conv = _conv(c_in, c_out)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return seq_apply(self.bn, seq_apply(self.conv, _masked(self.mask, x)))


class SPE(nn.Module):
    """Spikingformer's tokenizer stage: LIF [-> MaxPool] [-> mask] -> conv -> BN (SPE, or SPED with the pool)."""

    def __init__(self, c_in: int, c_out: int, neuron: NeuronConfig, pool: bool, site: str | None = None) -> None:
        super().__init__()
        self.lif = make_neuron(neuron)
        self.pool = _pool(pool)
        self.mask = _mask(site)
        self.conv = _conv(c_in, c_out)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _masked(self.mask, _apply(self.pool, self.lif(x)))  # the spikes the conv reads
        return seq_apply(self.bn, seq_apply(self.conv, x))


class SpikingTokenizer(nn.Module):
    """Spikingformer's Spiking Tokenizer: a ConvBN stem, then 4 SPE/SPED stages; real-valued tokens."""

    def __init__(self, chans: list[int], neuron: NeuronConfig, pools: tuple[bool, ...], **_) -> None:
        super().__init__()
        self.stem = ConvBN(chans[0], chans[1])
        out = chans[1:] + [chans[-1]]  # D/8 -> D/4 -> D/2 -> D -> D
        self.stages = nn.ModuleList(SPE(out[i], out[i + 1], neuron, pools[i], _site(i + 1)) for i in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return _tokens(x)


class ConvBNPoolLIF(nn.Module):
    """SAFormer's stage (reconstructed): [mask ->] conv -> BN [-> MaxPool] -> LIF."""

    def __init__(self, c_in: int, c_out: int, neuron: NeuronConfig, pool: bool, site: str | None = None) -> None:
        super().__init__()
        self.mask = _mask(site)
        self.conv = _conv(c_in, c_out)
        self.bn = nn.BatchNorm2d(c_out)
        self.pool = _pool(pool)
        self.lif = make_neuron(neuron)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _apply(self.pool, seq_apply(self.bn, seq_apply(self.conv, _masked(self.mask, x))))
        return self.lif(x)


class SAFormerSPS(nn.Module):
    """SAFormer's five-conv SPS (reconstructed, see the module docstring); real-valued tokens."""

    def __init__(self, chans: list[int], neuron: NeuronConfig, pools: tuple[bool, ...], residual: bool = True,
                 **_) -> None:
        super().__init__()
        self.stages = nn.ModuleList(ConvBNPoolLIF(chans[i], chans[i + 1], neuron, pools[i], _site(i))
                                    for i in range(4))
        self.fuse = ConvBN(chans[4], chans[4], site=_site(4))
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        fused = self.fuse(x)
        return _tokens(x + fused if self.residual else fused)


TOKENIZERS: dict[str, type[nn.Module]] = {"spikformer": SPS, "spikingformer": SpikingTokenizer,
                                          "saformer": SAFormerSPS}


def build_tokenizer(kind: str, in_channels: int, dim: int, neuron: NeuronConfig, pools: tuple[bool, ...],
                    residual: bool, fuse: bool = True) -> nn.Module:
    chans = [in_channels, dim // 8, dim // 4, dim // 2, dim]
    return TOKENIZERS[kind](chans, neuron, tuple(pools), residual=residual, fuse=fuse)
