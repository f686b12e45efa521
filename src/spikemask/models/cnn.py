"""Spiking ResNet and VGG converted from QCFS-trained ANNs, with Random Spike Masking on the input of every
convolution: the CNNs of MST's Table 3 and Fig. 5c-d (001_9e47b243e487ffe3.txt).

The architectures are the QCFS authors' CIFAR models (Bu et al., ICLR 2022; putshua/SNN_conversion_QCFS,
``Models/ResNet.py`` and ``Models/VGG.py``) with every ReLU a QCFS activation (``act``) and max-pooling
replaced by average pooling, as their ``replace_maxpool2d_by_avgpool2d`` does before training:

    ResNet-18  stem:   conv3x3(C, 64) -> BN -> act                    (stride 1, no max-pool: CIFAR)
               blocks: 4 stages x 2 BasicBlocks, 64/128/256/512 channels, strides 1/2/2/2
                       act(BN(conv3x3(act(BN(conv3x3(x))))) + shortcut(x)),  shortcut = x or BN(conv1x1/2(x))
               head:   mean over H, W -> Linear(512, classes)
    VGG-16     13 x [conv3x3 (with bias) -> BN -> act (-> dropout)], 64 64 | 128 128 | 256 x3 | 512 x3 | 512 x3,
               AvgPool 2x2 after each group (32 px -> 1 x 1)
               Flatten -> Linear(512 h w, 4096) -> act -> Linear(4096, 4096) -> act -> Linear(4096, classes)

Random Spike Masking (a :class:`~spikemask.masking.SpikeMask` in front of the layer, ``feeds`` naming it):

    conv.input       every 3x3 convolution but the first (ResNet: both convs of each BasicBlock)
    shortcut.input   ResNet's 1x1 downsampling convolutions (their own mask: each conv drops its own input)
    fc.input         every linear classifier layer (not a default site)

The first convolution reads the analog image (direct encoding): no spikes, no mask. The default sites are
the convolutions' (MST: "a masking ratio on the input spikes of every convolution"). A mask sits where the
layer reads, so after an average pool (VGG's first conv of a group and its first linear layer, ResNet's
linear layer) it drops pooled spikes (the mean of a window's spikes, a multiple of λ / window size) rather than
single spikes.

Blocks (``mask.blocks``, ``mask.block_ratios``): the stem, which has no mask, is not a block. ResNet's
blocks are its BasicBlocks in forward order (ResNet-18: 8); VGG's are its convolutions after the first
(VGG-16: 12), so ``blocks: [0, 1]`` masks the first two layers that read spikes. The ``fc.input`` masks
belong to no block and are not switched off by ``blocks``.

Conversion (:func:`spikemask.conversion.convert`): each QCFS becomes an IF neuron of threshold λ; the
converted model runs :meth:`forward_ann` once per step on the same ``[B, C, H, W]`` image and averages the
logits (``T`` steps; ``forward_steps`` gives the running mean after every step). Residual additions
(:class:`~spikemask.layers.ResidualAdd`) add the shortcut's spikes to the branch's BN output. The variants'
T = 32 is a choice: Table 3 does not state the time steps behind it.

Parameters (10 classes; counted in tests/test_cnn.py against a formula): ResNet-18 11,173,962 weights plus
17 QCFS λ (one per activation) = 11,173,979; torchvision's ``resnet18(num_classes=10)`` has 11,181,642 (its
7x7 stem conv: 9,408 weights instead of 1,728; its ImageNet model 11,689,512 with 1000 classes), otherwise
the same layers. VGG-16 33,646,666 weights (13 convs with biases, as the authors' code, though BN follows
each; BN 8,448; classifier 18,923,530) plus 15 λ = 33,646,681.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..config import bounded, check_bounds
from ..conversion import ConvertibleMixin, QCFSConfig
from ..conversion.qcfs import check_convertible
from ..layers import MeanPool, ResidualAdd
from ..masking import MaskableMixin, MaskConfig, SpikeMask
from .registry import register_family, register_model

__all__ = ["ConvNetConfig", "ResNetConfig", "VGGConfig", "ResNet", "VGG", "BasicBlock", "ConvLayer", "ConvBN",
           "MaskedLinear", "CONV_SITES", "FC_SITE"]

CONV_SITES = ("conv.input", "shortcut.input")
FC_SITE = "fc.input"


@dataclass(kw_only=True)
class ConvNetConfig:
    """The fields every converted CNN has (two families, two configs: their sizes differ in kind).

    img_size: input height = width in pixels.
    in_channels: 3 for RGB, 1 for grayscale.
    num_classes: classifier outputs.
    act: the activation after every BatchNorm: QCFS (L 16, λ 2, learnt) makes the ANN convertible;
        ``kind: relu`` gives a plain ANN (quantise it later).
    T: time steps of the converted SNN (the analog image is fed at every step); the ANN ignores it.
    converted: the model is the SNN (its QCFS replaced by IF neurons of threshold λ): set by
        ``spikemask.conversion.convert`` and stored in checkpoints, so a converted checkpoint rebuilds as one.
    mask: Random Spike Masking (sites None: the input of every convolution but the first).
    """

    img_size: int = bounded(32, ge=1)
    in_channels: int = bounded(3, ge=1)
    num_classes: int = bounded(10, ge=1)
    act: QCFSConfig = field(default_factory=QCFSConfig)
    T: int = bounded(32, ge=1)
    converted: bool = False
    mask: MaskConfig = field(default_factory=MaskConfig)

    def __post_init__(self) -> None:
        check_bounds(self, "model")
        check_convertible(self)


@dataclass(kw_only=True)
class ResNetConfig(ConvNetConfig):
    """ResNet with BasicBlocks (defaults: the QCFS authors' CIFAR ResNet-18), plus :class:`ConvNetConfig`'s fields.

    width: channels of the stem and the first stage; stage i has ``width * 2**i`` (ResNet-18: 64).
    depths: BasicBlocks per stage (ResNet-18: 2, 2, 2, 2); the first stage keeps the resolution, each later
        one halves it with a stride-2 conv and a 1x1 projection shortcut.
    """

    width: int = bounded(64, ge=1)
    depths: tuple[int, ...] = bounded((2, 2, 2, 2), ge=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.depths:
            raise ValueError("model.depths needs at least one stage (BasicBlocks per stage, e.g. [2, 2, 2, 2])")


@dataclass(kw_only=True)
class VGGConfig(ConvNetConfig):
    """VGG with BatchNorm and average pooling (defaults: the QCFS authors' CIFAR VGG-16), plus
    :class:`ConvNetConfig`'s fields.

    channels: output channels of each group of convolutions (VGG-16: 64, 128, 256, 512, 512).
    depths: convolutions per group (VGG-16: 2, 2, 3, 3, 3); a 2x2 average pool ends each group.
    hidden: width of the two hidden classifier layers (4096).
    dropout: after every activation (0 in the authors' code); identity at inference.
    conv_bias: biases on the convolutions (the authors' VGG has them, although a BatchNorm follows each).
    """

    channels: tuple[int, ...] = bounded((64, 128, 256, 512, 512), ge=1)
    depths: tuple[int, ...] = bounded((2, 2, 3, 3, 3), ge=1)
    hidden: int = bounded(4096, ge=1)
    dropout: float = bounded(0.0, ge=0, lt=1)
    conv_bias: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.depths or len(self.channels) != len(self.depths):
            raise ValueError(f"model.channels and model.depths need one entry per group, got {len(self.channels)} "
                             f"and {len(self.depths)}")
        if self.img_size >> len(self.depths) < 1:
            raise ValueError(f"model.img_size {self.img_size} is too small for {len(self.depths)} 2x2 poolings "
                             f"(at least {2 ** len(self.depths)})")

    @property
    def features(self) -> int:
        """Inputs of the first classifier layer: the last group's channels x the pooled map (1 x 1 at 32 px)."""
        return self.channels[-1] * (self.img_size >> len(self.depths)) ** 2


def step_mask(mask: SpikeMask | None, x: torch.Tensor) -> torch.Tensor:
    """Mask one step ``[B, ...]``: SpikeMask takes time-first ``[T, B, ...]``, here T = 1 (a mask per sample)."""
    if mask is None:
        return x
    return mask(x.unsqueeze(0)).squeeze(0)  # [1, B, ...] -> [B, ...]


class ConvBN(nn.Module):
    """``[mask ->] conv -> BN``: ``[B, C, H, W] -> [B, C', H', W']`` (no mask when ``site`` is None)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, *, site: str | None = None,
                 bias: bool = False) -> None:
        super().__init__()
        self.mask = SpikeMask(site, feeds="conv") if site else None
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=bias)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(step_mask(self.mask, x)))


class ConvLayer(nn.Module):
    """``[mask ->] conv3x3 -> BN -> act [-> dropout] [-> AvgPool 2x2]``: a VGG layer (and ResNet's stem)."""

    def __init__(self, cin: int, cout: int, act: QCFSConfig, *, site: str | None = None, bias: bool = False,
                 dropout: float = 0.0, pool: bool = False) -> None:
        super().__init__()
        self.mask = SpikeMask(site, feeds="conv") if site else None
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=bias)
        self.bn = nn.BatchNorm2d(cout)
        self.act = act.make()
        self.drop = nn.Dropout(dropout) if dropout > 0 else None
        self.pool = nn.AvgPool2d(2, 2) if pool else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn(self.conv(step_mask(self.mask, x))))
        if self.drop is not None:
            x = self.drop(x)
        return x if self.pool is None else self.pool(x)


class BasicBlock(nn.Module):
    """``act(BN(conv3x3(act(BN(conv3x3(x))))) + shortcut(x))`` (the authors' BasicBlock), ``[B, C, H, W]``."""

    def __init__(self, cin: int, cout: int, stride: int, act: QCFSConfig, stage: int) -> None:
        super().__init__()
        self.stage = stage
        self.conv1 = ConvBN(cin, cout, 3, stride, site="conv.input")
        self.act1 = act.make()
        self.conv2 = ConvBN(cout, cout, 3, 1, site="conv.input")
        # identity shortcut: the input spikes are added as they are (an addition, not a convolution: no mask)
        project = stride != 1 or cin != cout
        self.shortcut = ConvBN(cin, cout, 1, stride, site="shortcut.input") if project else None
        self.add = ResidualAdd()
        self.act2 = act.make()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.conv2(self.act1(self.conv1(x)))
        short = x if self.shortcut is None else self.shortcut(x)
        return self.act2(self.add(short, branch))


class MaskedLinear(nn.Module):
    """``mask -> Linear``, ``[B, F] -> [B, F']``: a classifier layer reading (pooled) spikes."""

    def __init__(self, fin: int, fout: int) -> None:
        super().__init__()
        self.mask = SpikeMask(FC_SITE, feeds="linear")
        self.linear = nn.Linear(fin, fout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(step_mask(self.mask, x))


class _ConvNet(ConvertibleMixin, MaskableMixin, nn.Module):
    """What ResNet and VGG share: input checks, mask sites and blocks, conversion on rebuild."""

    family = "cnn"
    config: ConvNetConfig
    blocks: nn.ModuleList

    def _finish(self) -> None:
        if self.config.converted:
            self.convert_structure()  # a converted checkpoint: thresholds come with its state dict
        self.set_mask(self.config.mask)

    @property
    def mask_sites(self) -> tuple[str, ...]:
        """The sites this model has, in module order."""
        return tuple(dict.fromkeys(m.site for m in self.modules() if isinstance(m, SpikeMask)))

    @property
    def default_mask_sites(self) -> tuple[str, ...]:
        """The input of every convolution that reads spikes (MST's CNN masking); not the classifier's."""
        return tuple(s for s in self.mask_sites if s in CONV_SITES)

    def mask_blocks(self) -> list[str]:
        """ResNet: the BasicBlocks; VGG: the convolutions after the first. The stem (no mask) is not a block."""
        return [f"blocks.{i}" for i in range(len(self.blocks))]

    def expected_input(self) -> str:
        c = self.config
        return f"[B, {c.in_channels}, {c.img_size}, {c.img_size}] (a static image)"

    def check_input(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        if x.dim() != 4 or tuple(x.shape[1:]) != (c.in_channels, c.img_size, c.img_size):
            hint = (" [T, B, C, H, W] event frames are not supported: this CNN is converted from a static-image "
                    "ANN and feeds the same image at every step" if x.dim() == 5 else "")
            raise ValueError(f"{self.variant} expects input {self.expected_input()}; got shape {tuple(x.shape)}."
                             f"{hint}")
        return x

    def forward_steps(self, x: torch.Tensor, T: int | None = None) -> torch.Tensor:
        """Running mean of the converted model's logits after every step, ``[T, B, classes]``."""
        if T is not None and (not isinstance(T, int) or isinstance(T, bool) or T < 1):
            raise ValueError(f"T must be a positive integer (time steps), got {T!r}")
        if self.config.converted and any(m.enabled and m.share_over_time for m in self.modules()
                                         if isinstance(m, SpikeMask)):
            raise ValueError("mask.share_over_time is not supported by converted CNNs: they run one step per "
                             "call and a SpikeMask draws a new mask at every call; set share_over_time: false")
        return super().forward_steps(x, T)

    def extra_repr(self) -> str:
        c = self.config
        mode = f"SNN, T={c.T}" if c.converted else f"ANN ({c.act.kind})"
        return f"variant={self.variant!r}, {mode}, blocks={len(self.blocks)}, mask: {c.mask.describe()}"


class ResNet(_ConvNet):
    """Spiking ResNet (QCFS authors' CIFAR ResNet): ``[B, C, H, W] -> [B, num_classes]``."""

    family = "resnet"

    def __init__(self, config: ResNetConfig) -> None:
        super().__init__()
        self.config, self.variant = config, self.family
        c, w = config, config.width
        self.stem = ConvLayer(c.in_channels, w, c.act)  # reads the analog image: no mask
        blocks, cin = [], w
        for stage, depth in enumerate(c.depths):
            cout = w * 2**stage
            for i in range(depth):
                blocks.append(BasicBlock(cin, cout, 2 if stage > 0 and i == 0 else 1, c.act, stage))
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.pool = MeanPool(dims=(2, 3))  # [B, C, H, W] -> [B, C]
        self.fc = MaskedLinear(cin, c.num_classes)
        self._finish()

    def forward_ann(self, x: torch.Tensor) -> torch.Tensor:
        """One pass of the ANN (or one step of the SNN): ``[B, C, H, W] -> [B, classes]``."""
        x = self.stem(self.check_input(x))
        for block in self.blocks:
            x = block(x)
        return self.fc(self.pool(x))


class VGG(_ConvNet):
    """Spiking VGG with BatchNorm and average pooling (QCFS authors' CIFAR VGG): ``[B, C, H, W] -> [B, classes]``."""

    family = "vgg"

    def __init__(self, config: VGGConfig) -> None:
        super().__init__()
        self.config, self.variant = config, self.family
        c = config
        layers, cin = [], c.in_channels
        for width, depth in zip(c.channels, c.depths):
            for i in range(depth):
                site = "conv.input" if layers else None  # the first conv reads the analog image
                layers.append(ConvLayer(cin, width, c.act, site=site, bias=c.conv_bias, dropout=c.dropout,
                                        pool=i == depth - 1))
                cin = width
        self.stem = layers[0]
        self.blocks = nn.ModuleList(layers[1:])
        self.fc1 = MaskedLinear(c.features, c.hidden)
        self.act1 = c.act.make()
        self.drop1 = nn.Dropout(c.dropout) if c.dropout > 0 else None
        self.fc2 = MaskedLinear(c.hidden, c.hidden)
        self.act2 = c.act.make()
        self.drop2 = nn.Dropout(c.dropout) if c.dropout > 0 else None
        self.fc3 = MaskedLinear(c.hidden, c.num_classes)
        self._init_weights()
        self._finish()

    def _init_weights(self) -> None:
        """The authors' init: Kaiming-normal (fan out) convs, zero linear biases (BatchNorm's defaults: 1, 0)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m.weight.device.type != "meta":
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear) and m.bias.device.type != "meta":
                nn.init.zeros_(m.bias)

    def forward_ann(self, x: torch.Tensor) -> torch.Tensor:
        """One pass of the ANN (or one step of the SNN): ``[B, C, H, W] -> [B, classes]``."""
        x = self.stem(self.check_input(x))
        for block in self.blocks:
            x = block(x)
        x = self.act1(self.fc1(x.flatten(1)))  # [B, C h w] -> [B, hidden]
        x = self.act2(self.fc2(x if self.drop1 is None else self.drop1(x)))
        return self.fc3(x if self.drop2 is None else self.drop2(x))


register_family("resnet", ResNetConfig, ResNet)
register_family("vgg", VGGConfig, VGG)

_CIFAR = dict(img_size=32, in_channels=3, num_classes=10)
_DIGITS = dict(img_size=32, in_channels=1, num_classes=10)


@register_model("resnet")
def resnet18_cifar():
    """ResNet-18 for CIFAR-10 (32x32 RGB): the QCFS authors' CIFAR model, 3x3 stem, no max-pool; SNN T 32."""
    return dict(_CIFAR, width=64, depths=(2, 2, 2, 2))


@register_model("resnet")
def resnet_small_digits():
    """Small ResNet (width 16, 1+1+1 blocks) for the 1x32x32 digits: trains on 2 CPU cores in a minute."""
    return dict(_DIGITS, width=16, depths=(1, 1, 1))


@register_model("resnet")
def test_resnet():
    """Test-sized ResNet (width 4, 1+1+1 blocks, 1x32x32, T 4)."""
    return dict(_DIGITS, width=4, depths=(1, 1, 1), T=4)


@register_model("vgg")
def vgg16_cifar():
    """VGG-16 with BatchNorm and average pooling for CIFAR-10 (32x32 RGB): the QCFS authors' model; SNN T 32."""
    return dict(_CIFAR, channels=(64, 128, 256, 512, 512), depths=(2, 2, 3, 3, 3), hidden=4096)


@register_model("vgg")
def vgg_small_digits():
    """Small VGG (8 convs, 16-64 channels, hidden 128) for the 1x32x32 digits: trains on 2 CPU cores in a minute."""
    return dict(_DIGITS, channels=(16, 32, 64, 64, 64), depths=(1, 1, 2, 2, 2), hidden=128)


@register_model("vgg")
def test_vgg():
    """Test-sized VGG (4 convs, 4-16 channels, hidden 16, 1x32x32, T 4)."""
    return dict(_DIGITS, channels=(4, 8, 16), depths=(1, 1, 2), hidden=16, T=4)
