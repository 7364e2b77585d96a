"""The ``compress`` section: the steps run on the distilled student (prune, recover, factorize, quantize, export),
each a typed model chosen by its ``kind`` (docs/compression.md)."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from distillkit.config.base import Strict as _Strict

__all__ = ["CompressConfig", "CompressStep", "ExportStep", "FactorizeStep", "PruneStep", "QuantizeStep",
           "RecoverStep"]


class _StepBase(_Strict):
    layers: list[str] | None = Field(None, description="glob patterns of layer names to include (default: all)")
    exclude: list[str] = Field(default_factory=list, description="glob patterns of layer names to leave alone")


class PruneStep(_StepBase):
    kind: Literal["prune"]
    method: Literal["channel", "magnitude"] = Field("channel", description="channel: remove neurons/channels; "
                                                    "magnitude: zero single weights")
    amount: float = Field(..., gt=0, lt=1)
    scope: Literal["layer", "global"] = "layer"


class RecoverStep(_Strict):
    kind: Literal["recover"]
    epochs: int = Field(5, ge=1)
    lr: float | None = Field(None, gt=0, description="default: the student's training lr / 10")
    teacher: bool = Field(True, description="recover with the teacher (the distill section's terms) or alone")
    gradual_sparsity: float | None = Field(None, gt=0, lt=1, description="raise magnitude sparsity to this "
                                           "during the recovery (Zhu & Gupta cubic schedule)")
    alpha: float | None = Field(None, ge=0, le=1, description="soft-label weight while recovering (default: distill's)")
    temperature: float | None = Field(None, gt=0, description="KD temperature while recovering (default: distill's)")
    labels: float = Field(1.0, gt=0, le=1, description="the share of the training labels recovery may use (a "
                          "stratified sample, drawn by the seed): with the teacher it still sees every training "
                          "input, the teacher's outputs standing in for the missing labels; alone, only the "
                          "labelled ones")


class FactorizeStep(_StepBase):
    kind: Literal["factorize"]
    rank: int | None = Field(None, ge=1)
    energy: float | None = Field(None, gt=0, lt=1)
    ratio: float | None = Field(None, gt=1)


class QuantizeStep(_StepBase):
    kind: Literal["quantize"]
    mode: Literal["dynamic", "static", "qat"] = Field("dynamic", description="dynamic: int8 weights (PyTorch, "
                                                      "CPU); static: calibrated int8 in ONNX Runtime; qat: "
                                                      "quantization-aware KD training, then dynamic int8")
    epochs: int = Field(3, ge=1, description="qat: epochs of KD training with fake quantization")
    calibration_batches: int = Field(8, ge=1, description="static: training batches to calibrate on")


class ExportStep(_Strict):
    kind: Literal["export"]
    formats: list[Literal["safetensors", "onnx", "onnx-int8"]] = Field(
        default_factory=lambda: ["safetensors", "onnx", "onnx-int8"])
    atol: float = Field(1e-4, gt=0, description="largest |ONNX Runtime - PyTorch| output difference allowed")


CompressStep = Annotated[Union[PruneStep, RecoverStep, FactorizeStep, QuantizeStep, ExportStep],
                         Field(discriminator="kind")]


class CompressConfig(_Strict):
    """Steps applied to the distilled student after distillation, each one measured (accuracy, size, latency)."""

    source: Literal["distilled", "student_alone"] = "distilled"
    steps: list[CompressStep] = Field(..., min_length=1)
