"""ReviewKD (Chen et al. 2021, "Distilling knowledge via knowledge review"): a multi-stage feature method.

Each student stage is fused with the already-fused deeper stages by an attention-based fusion (ABF) module and
then matched to the teacher's feature of the same stage with the hierarchical context loss (HCL): MSE on the
whole map plus MSE on 4x4, 2x2 and 1x1 average-pooled maps, weighted 1, 1/2, 1/4, 1/8 and normalised (the paper's
eq. 5-7 and its reference code). Deep student stages thus teach shallow ones through the review path, and every
stage is supervised by the teacher. Vector features ``[B, D]`` are treated as ``[B, D, 1, 1]`` maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distillkit.core.schedules import ScheduleLike
from distillkit.core.terms import DistillContext, LossTerm

__all__ = ["ABF", "ReviewTerm", "hcl_loss"]


def hcl_loss(student: Tensor, teacher: Tensor, *, levels: tuple[int, ...] = (4, 2, 1)) -> Tensor:
    """Hierarchical context loss between two ``[B, C, H, W]`` maps of the same shape (Chen et al. 2021, eq. 7).

    ``MSE(s, t)`` plus, for each pooling size ``l`` smaller than ``H``, ``MSE(pool_l(s), pool_l(t))`` weighted
    ``1/2, 1/4, ...``; the sum is divided by the sum of the weights. Zero when ``s == t``.
    """
    if student.shape != teacher.shape:
        raise ValueError(f"hcl_loss needs equal shapes, got {tuple(student.shape)} and {tuple(teacher.shape)}")
    teacher = teacher.detach()
    loss = F.mse_loss(student, teacher)
    weight, total = 1.0, 1.0
    for level in levels:
        if level >= student.shape[2]:
            continue
        weight /= 2.0
        loss = loss + weight * F.mse_loss(F.adaptive_avg_pool2d(student, level), F.adaptive_avg_pool2d(teacher, level))
        total += weight
    return loss / total


class ABF(nn.Module):
    """Attention-based fusion: project a student map, merge it with the deeper fused map, and map it to the
    teacher's channels. Returns ``(output for the loss, fused map passed to the next, shallower stage)``."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, fuse: bool) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, mid_channels, 1, bias=False), nn.BatchNorm2d(mid_channels))
        self.conv2 = nn.Sequential(nn.Conv2d(mid_channels, out_channels, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(out_channels))
        self.att = nn.Sequential(nn.Conv2d(2 * mid_channels, 2, 1), nn.Sigmoid()) if fuse else None

    def forward(self, x: Tensor, deeper: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = self.conv1(x)
        if self.att is not None and deeper is not None:
            deeper = F.interpolate(deeper, size=x.shape[-2:], mode="nearest")
            z = self.att(torch.cat([x, deeper], dim=1))
            x = x * z[:, :1] + deeper * z[:, 1:]
        return self.conv2(x), x


def _as_map(x: Tensor) -> Tensor:
    if x.dim() == 4:
        return x
    if x.dim() == 2:
        return x[:, :, None, None]
    if x.dim() == 3:  # [B, L, D] tokens -> [B, D, L, 1]
        return x.transpose(1, 2).unsqueeze(-1)
    raise ValueError(f"ReviewKD needs [B, C, H, W], [B, L, D] or [B, D] features, got {tuple(x.shape)}")


class ReviewTerm(LossTerm):
    """ReviewKD over several (student layer, teacher layer) stages, listed shallow to deep.

    Args:
        student_layers / teacher_layers: the stages, the same number on each side, shallow first.
        weight: the term's weight (the paper uses 1.0 on CIFAR with a warm-up).
        mid_channels: width of the fusion path.
    """

    def __init__(self, student_layers: list[str], teacher_layers: list[str], weight: ScheduleLike = 1.0, *,
                 mid_channels: int = 64, name: str = "reviewkd") -> None:
        super().__init__(name, weight)
        if len(student_layers) != len(teacher_layers) or not student_layers:
            raise ValueError(f"ReviewKD needs as many student as teacher stages (>= 1), got {len(student_layers)} "
                             f"and {len(teacher_layers)}")
        self.student_layers, self.teacher_layers = tuple(student_layers), tuple(teacher_layers)
        self.mid_channels = mid_channels
        self.fusions: nn.ModuleList | None = None

    def setup(self, ctx: DistillContext) -> None:
        assert ctx.teacher is not None
        modules = []
        for stage, (s_name, t_name) in enumerate(zip(self.student_layers, self.teacher_layers)):
            s, t = _as_map(ctx.student_features[s_name]), _as_map(ctx.teacher.features[t_name])
            deepest = stage == len(self.student_layers) - 1
            modules.append(ABF(s.shape[1], self.mid_channels, t.shape[1], fuse=not deepest).to(s.device))
        self.fusions = nn.ModuleList(modules)

    def forward(self, ctx: DistillContext) -> Tensor:
        if self.fusions is None:
            raise RuntimeError("ReviewTerm.setup was not called (Distiller.setup builds the fusion modules)")
        assert ctx.teacher is not None
        loss = ctx.student_logits.new_zeros((), dtype=torch.float32)
        deeper: Tensor | None = None
        for stage in reversed(range(len(self.student_layers))):  # deep to shallow: the review path
            student = _as_map(ctx.student_features[self.student_layers[stage]])
            teacher = _as_map(ctx.teacher.features[self.teacher_layers[stage]]).float()
            output, deeper = self.fusions[stage](student, deeper)
            if output.shape[-2:] != teacher.shape[-2:]:
                output = F.interpolate(output, size=teacher.shape[-2:], mode="bilinear", align_corners=False)
            loss = loss + hcl_loss(output.float(), teacher)
        return loss
