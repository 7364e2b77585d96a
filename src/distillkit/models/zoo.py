"""The model zoo: architectures of the knowledge-distillation literature, sized by argument.

Every factory takes ``num_classes`` and ``input_shape`` (one sample's shape, e.g. ``(1, 28, 28)`` or
``(40,)``) plus its own keyword arguments, and returns a plain ``nn.Module`` with readable module names for
feature taps (``"features"``, ``"layer3"``, ``"fc1"``...).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distillkit.models.soft_tree import SoftDecisionTree
from distillkit.registry import Registry

__all__ = ["MODELS", "AudioCNN", "CifarResNet", "MLP", "SimpleCNN", "MNIST1DCNN", "TransformerEncoderClassifier", "WideResNet"]

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


class MLP(nn.Module):
    """Flatten, then ``Linear -> ReLU (-> Dropout)`` per hidden width, then a linear head ``fc_out``.

    Hidden layers are named ``fc1``, ``fc2``, ... and their activations ``act1``, ``act2``, ... (tap these).
    """

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (256,), dropout: float = 0.0) -> None:
        super().__init__()
        width = in_features
        for i, size in enumerate(hidden, 1):
            self.add_module(f"fc{i}", nn.Linear(width, size))
            self.add_module(f"act{i}", nn.ReLU())
            self.add_module(f"drop{i}", nn.Dropout(dropout))
            width = size
        self.depth = len(hidden)
        self.fc_out = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        for i in range(1, self.depth + 1):
            x = getattr(self, f"drop{i}")(getattr(self, f"act{i}")(getattr(self, f"fc{i}")(x)))
        return self.fc_out(x)


class SimpleCNN(nn.Module):
    """LeNet-style CNN: ``conv3x3 -> ReLU -> maxpool`` per width, then ``fc1 -> ReLU -> dropout -> fc_out``.

    With the defaults on 1x28x28 inputs it has ~421k parameters (the MNIST teacher of the benchmarks).
    ``batch_norm=True`` puts a batch normalization after each convolution (``conv -> BN -> ReLU -> maxpool``),
    which small CNNs train better with.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, channels: Sequence[int] = (32, 64),
                 hidden: int = 128, dropout: float = 0.25, batch_norm: bool = False) -> None:
        super().__init__()
        c, h, w = _image_shape(input_shape)
        layers: list[nn.Module] = []
        for out in channels:
            norm = [nn.BatchNorm2d(out)] if batch_norm else []
            layers += [nn.Conv2d(c, out, 3, padding=1, bias=not batch_norm), *norm, nn.ReLU(), nn.MaxPool2d(2)]
            c, h, w = out, h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.fc1 = nn.Linear(c * h * w, hidden)
        self.dropout = nn.Dropout(dropout)
        self.fc_out = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x).flatten(1)
        return self.fc_out(self.dropout(F.relu(self.fc1(x))))


class MNIST1DCNN(nn.Module):
    """The MNIST-1D paper's CNN (Greydanus 2020): three strided 1-D convolutions and a linear head (~5k params)."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, channels: int = 25) -> None:
        super().__init__()
        length = int(input_shape[-1])
        self.conv1 = nn.Conv1d(1, channels, 5, stride=2, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        with torch.no_grad():
            flat = self._body(torch.zeros(1, 1, length)).shape[1]
        self.fc_out = nn.Linear(flat, num_classes)

    def _body(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return F.relu(self.conv3(x)).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc_out(self._body(x.reshape(x.shape[0], 1, -1)))


class AudioCNN(nn.Module):
    """A small audio classifier over log-mel frames ``[B, n_mels, frames]``: strided 1-D convolutions over time
    (the mel bands are the channels), a bidirectional GRU, mean and max pooling over time, a linear head.

    Frames at the silence floor (``log(1e-6)``) after the last sound are padding: the features are shifted so that
    padding is zero, every block's output is masked past each utterance's length, the GRU reads packed sequences
    and the pooling skips padding, so padding an utterance (to the batch's length) does not change its prediction.
    """

    floor = math.log(1e-6)

    def __init__(self, input_shape: Sequence[int], num_classes: int, channels: int = 96, hidden: int = 64,
                 dropout: float = 0.1) -> None:
        super().__init__()
        mels = int(input_shape[0])
        self.blocks = nn.ModuleList([
            nn.Sequential(nn.Conv1d(mels, channels, 5, stride=2, padding=2), nn.BatchNorm1d(channels), nn.ReLU()),
            nn.Sequential(nn.Conv1d(channels, channels, 5, stride=2, padding=2), nn.BatchNorm1d(channels), nn.ReLU()),
            nn.Sequential(nn.Conv1d(channels, channels, 3, padding=1), nn.BatchNorm1d(channels), nn.ReLU())])
        self.gru = nn.GRU(channels, hidden, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.fc_out = nn.Linear(4 * hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = (x - self.floor).clamp_min(0)  # padding (and digital silence) is exactly 0
        sound = (x > 1e-3).any(1)  # [B, T]
        positions = torch.arange(x.shape[-1], device=x.device)
        lengths = torch.where(sound, positions + 1, 0).amax(1).clamp_min(1)  # one past the last sound
        for block in self.blocks:
            stride = block[0].stride[0]
            x = block(x)
            lengths = (lengths + stride - 1) // stride
            x = x * (torch.arange(x.shape[-1], device=x.device) < lengths[:, None]).unsqueeze(1)
        packed = nn.utils.rnn.pack_padded_sequence(x.transpose(1, 2), lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        h, _ = nn.utils.rnn.pad_packed_sequence(self.gru(packed)[0], batch_first=True, total_length=x.shape[-1])
        keep = (torch.arange(h.shape[1], device=x.device) < lengths[:, None]).unsqueeze(-1)
        mean = (h * keep).sum(1) / keep.sum(1)
        top = h.masked_fill(~keep, float("-inf")).amax(1)
        return self.fc_out(self.dropout(torch.cat([mean, top], dim=-1)))


def _image_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(f"this model needs image inputs [C, H, W], got input_shape {tuple(input_shape)}")
    return int(input_shape[0]), int(input_shape[1]), int(input_shape[2])


class _BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (self.downsample(x) if self.downsample is not None else x))


class CifarResNet(nn.Module):
    """The CIFAR ResNets of the KD benchmarks (CRD, Tian et al. 2020): depth ``6n + 2``, three stages.

    ``resnet20``/``resnet56`` use widths 16-32-64; the ``x4`` variants 32-64-128-256 (stem 32). Stages are
    named ``layer1``..``layer3`` for feature taps.
    """

    def __init__(self, depth: int, widths: Sequence[int], num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n + 2, got {depth}")
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        inplanes = widths[0]
        for i, planes in enumerate(widths[1:], 1):
            layers = []
            for b in range(blocks):
                layers.append(_BasicBlock(inplanes, planes, stride=2 if (b == 0 and i > 1) else 1))
                inplanes = planes
            self.add_module(f"layer{i}", nn.Sequential(*layers))
        self.stages = len(widths) - 1
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        for i in range(1, self.stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class _WideBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(inplanes), nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(planes), nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.shortcut = None if inplanes == planes and stride == 1 else nn.Conv2d(inplanes, planes, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv2(self.dropout(F.relu(self.bn2(self.conv1(pre)))))
        return out + (self.shortcut(pre) if self.shortcut is not None else x)


class WideResNet(nn.Module):
    """WRN-depth-k (Zagoruyko & Komodakis 2016), as in the KD benchmarks (WRN-40-2 -> WRN-16-2)."""

    def __init__(self, depth: int, widen: int, num_classes: int, in_channels: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        inplanes = widths[0]
        for i, planes in enumerate(widths[1:], 1):
            blocks = [_WideBlock(inplanes if b == 0 else planes, planes, 2 if (b == 0 and i > 1) else 1, dropout)
                      for b in range(n)]
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
            inplanes = planes
        self.bn = nn.BatchNorm2d(inplanes)
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(F.relu(self.bn(x)), 1).flatten(1))


class TransformerEncoderClassifier(nn.Module):
    """A small transformer encoder over token ids with mean pooling and a linear head.

    Layers are ``encoder.layers.<i>`` (each returns ``[B, L, d_model]``) for hidden-state transfer.
    Batches give ``input_ids`` ``[B, L]`` and optionally ``attention_mask`` ``[B, L]`` (1 = token).
    """

    def __init__(self, vocab_size: int, num_classes: int, d_model: int = 128, layers: int = 2, heads: int = 4,
                 ff: int = 256, max_len: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.position = nn.Embedding(max_len, d_model)
        layer = nn.TransformerEncoderLayer(d_model, heads, ff, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.fc = nn.Linear(d_model, num_classes)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.embed(input_ids) + self.position(positions)
        padding = None if attention_mask is None else attention_mask == 0
        x = self.norm(self.encoder(x, src_key_padding_mask=padding))
        if attention_mask is None:
            pooled = x.mean(1)
        else:
            weights = attention_mask.unsqueeze(-1).to(x.dtype)
            pooled = (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return self.fc(pooled)


def _channels(input_shape: Sequence[int]) -> int:
    return _image_shape(input_shape)[0]


@MODELS.register("mlp", "multi-layer perceptron over flattened inputs; hidden=[256], dropout=0")
def mlp(num_classes: int, input_shape: Sequence[int], hidden: Sequence[int] = (256,), dropout: float = 0.0) -> nn.Module:
    return MLP(math.prod(input_shape), num_classes, hidden, dropout)


@MODELS.register("cnn", "LeNet-style CNN; channels=[32, 64], hidden=128 (~421k params on 28x28), dropout=0.25, "
                 "batch_norm=false")
def cnn(num_classes: int, input_shape: Sequence[int], **kwargs: Any) -> nn.Module:
    return SimpleCNN(input_shape, num_classes, **kwargs)


@MODELS.register("lenet", "LeNet-5-sized CNN; channels=[6, 16], hidden=84")
def lenet(num_classes: int, input_shape: Sequence[int], **kwargs: Any) -> nn.Module:
    return SimpleCNN(input_shape, num_classes, **{"channels": (6, 16), "hidden": 84, "dropout": 0.0, **kwargs})


@MODELS.register("audio_cnn", "audio over log-mel frames [n_mels, frames]: strided 1-D convs, a BiGRU, pooling; "
                 "channels=96, hidden=64")
def audio_cnn(num_classes: int, input_shape: Sequence[int], **kwargs: Any) -> nn.Module:
    return AudioCNN(input_shape, num_classes, **kwargs)


@MODELS.register("mnist1d_cnn", "the MNIST-1D paper's 1-D CNN; channels=25")
def mnist1d_cnn(num_classes: int, input_shape: Sequence[int], **kwargs: Any) -> nn.Module:
    return MNIST1DCNN(input_shape, num_classes, **kwargs)


def _register_resnet(name: str, depth: int, widths: Sequence[int]) -> None:
    def factory(num_classes: int, input_shape: Sequence[int]) -> nn.Module:
        return CifarResNet(depth, widths, num_classes, in_channels=_channels(input_shape))

    MODELS.register(name, f"CIFAR ResNet-{depth}, widths {list(widths)}")(factory)


_register_resnet("resnet20", 20, (16, 16, 32, 64))
_register_resnet("resnet56", 56, (16, 16, 32, 64))
_register_resnet("resnet8x4", 8, (32, 64, 128, 256))
_register_resnet("resnet32x4", 32, (32, 64, 128, 256))


def _register_wrn(name: str, depth: int, widen: int) -> None:
    def factory(num_classes: int, input_shape: Sequence[int], dropout: float = 0.0) -> nn.Module:
        return WideResNet(depth, widen, num_classes, in_channels=_channels(input_shape), dropout=dropout)

    MODELS.register(name, f"Wide ResNet-{depth}-{widen}")(factory)


_register_wrn("wrn_16_2", 16, 2)
_register_wrn("wrn_40_2", 40, 2)


@MODELS.register("transformer_encoder", "small transformer encoder over token ids; vocab_size, d_model=128, layers=2")
def transformer_encoder(num_classes: int, input_shape: Sequence[int] | None = None, **kwargs: Any) -> nn.Module:
    if "vocab_size" not in kwargs:
        raise ValueError("transformer_encoder needs vocab_size")
    return TransformerEncoderClassifier(num_classes=num_classes, **kwargs)


@MODELS.register("soft_tree", "soft decision tree (Frosst & Hinton 2017) over flattened inputs; depth=6, beta=1, "
                 "penalty_strength=0.1")
def soft_tree(num_classes: int, input_shape: Sequence[int], depth: int = 6, beta: float = 1.0,
              penalty_strength: float = 0.1) -> nn.Module:
    return SoftDecisionTree(math.prod(input_shape), num_classes, depth, beta=beta, penalty_strength=penalty_strength)
