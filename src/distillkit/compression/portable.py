"""Portable model folders: a model that cannot be rebuilt by name (a user's own ``nn.Module``, as ``distill()``
trains it) saved as what loads without its Python class.

A folder written by :func:`save_portable` holds

- ``model.onnx``: the model as an ONNX graph with a dynamic batch dimension, checked against PyTorch before it is
  kept (needs the ``compress`` extra). ONNX Runtime runs it; loading it runs no Python code, so it is what
  :func:`load_portable` loads by default and what to share;
- ``model.pt2``: the model as a ``torch.export`` program (a PyTorch graph module with the weights). Loading it
  goes through ``torch.export.load``, which may unpickle objects stored in the file, so :func:`load_portable`
  reads it only with ``trust_code=True`` (a folder you wrote or trust);
- ``model.safetensors``: the weights by the module's own names, for whoever has its class
  (``model.load_state_dict(safetensors.torch.load_file(...))``);
- ``portable.json``: which of these were written (and why one was not), the input shape and the number of
  outputs; ``README.md``: a model card; ``.distillkit-model``: the mark of a folder distillkit may replace.

Example:
    >>> save_portable(student, "exports/my-student", torch.randn(2, 1, 28, 28))  # doctest: +SKIP
    >>> model = load_portable("exports/my-student")      # ONNX Runtime, no code run  # doctest: +SKIP
    >>> module = load_portable("exports/my-student", trust_code=True)  # the torch.export program  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import re
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import ModelCard, ModelCardData
from torch import Tensor, nn

from distillkit.compression.common import CompressionError
from distillkit.compression.export import OnnxModel, export_onnx, save_safetensors
from distillkit.models.pretrained import MODEL_MARKER, ModelCardInfo, check_model_folder
from distillkit.models.trust import UntrustedCodeError
from distillkit.registry import DistillkitError
from distillkit.storage import json_text, write_text_atomic

__all__ = ["PORTABLE_FILE", "ExportedModule", "is_portable", "load_portable", "save_portable"]

PORTABLE_FILE = "portable.json"
"""The file that describes a portable model folder."""

USE_IT = """## Use it

This model is a module of its author's own, so it is shared as what loads without its Python class:

```python
from distillkit.compression import load_portable

model = load_portable("<this folder>")    # model.onnx through ONNX Runtime: runs no code from the folder
outputs = model(inputs)                   # a batch shaped like {shape}
```

Without distillkit: `onnxruntime.InferenceSession("model.onnx")`. `model.pt2` is the same model as a
`torch.export` program (`torch.export.load("model.pt2").module()`, or `load_portable(folder, trust_code=True)`):
load it only from a source you trust, since `torch.export.load` may unpickle objects stored in it.
`model.safetensors` holds the weights by the module's own names, for whoever has its class.
"""


def _first_line(error: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def _write_program(model: nn.Module, path: Path, inputs: tuple[Tensor, ...]) -> None:
    """``torch.export`` the model with a dynamic batch dimension into ``path`` (written whole or not at all)."""
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():
        program = torch.export.export(model, inputs, dynamic_shapes=tuple({0: batch} for _ in inputs))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    write_text_atomic(path, buffer.getvalue())


def _card(info: ModelCardInfo, shape: list[int] | None) -> str:
    data = ModelCardData(**{"library_name": "distillkit", "tags": ["distillkit", "knowledge-distillation", "onnx"],
                            **info.metadata}, eval_results=list(info.results) or None,
                         model_name=info.title if info.results else None)
    use_it = USE_IT.replace("{shape}", f"[batch, {', '.join(map(str, shape))}]" if shape else "its inputs")
    template = "---\n{{ card_data }}\n---\n\n# {{ title }}\n\n{{ body }}\n\n{{ use_it }}"
    return str(ModelCard.from_template(card_data=data, template_str=template, use_it=use_it, body=info.body or "",
                                       title=info.title or "A model distilled with distillkit"))


def save_portable(model: nn.Module, folder: str | Path, example_inputs: Tensor | tuple[Tensor, ...] | None, *,
                  card: ModelCardInfo | None = None) -> dict[str, Any]:
    """Save ``model`` into ``folder`` as ONNX (when the ``compress`` extra is installed), a ``torch.export``
    program and its weights, with ``portable.json`` and a model card; a format that cannot be written is named in
    ``portable.json`` with the reason, and the others are still written.

    Args:
        model: any module whose ``forward`` takes tensors (``example_inputs``, batch first).
        folder: a new or empty folder, or one distillkit wrote (never a user's own files).
        example_inputs: a batch of inputs (two or more rows), used to trace the model; ``None`` for a model whose
            inputs are not tensors (texts): only its weights are written.
        card: the model card's title, body and Hub metadata.

    Returns:
        what ``portable.json`` holds: ``files`` (written, with what each is), ``not_written`` (format -> why),
        ``input_shape``, ``outputs``.

    Raises:
        DistillkitError: ``folder`` holds files distillkit did not write.
    """
    folder = Path(folder)
    check_model_folder(folder)
    model = copy.deepcopy(model).eval().cpu()  # the caller's model stays where it is, in its mode
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MODEL_MARKER).touch()
    save_safetensors(model, folder / "model.safetensors")
    files = {"model.safetensors": "the weights by the module's own names (for whoever has its class)"}
    missing: dict[str, str] = {}
    shape, outputs = None, None
    if example_inputs is None:
        why = ("the model reads inputs that are not one tensor (texts, or several fields): only its weights are "
               "shareable")
        missing = {"model.pt2": why, "model.onnx": why}
    else:
        inputs = tuple(x.detach().cpu() for x in (example_inputs if isinstance(example_inputs, tuple)
                                                   else (example_inputs,)))
        try:
            _write_program(model, folder / "model.pt2", inputs)
            files["model.pt2"] = "a torch.export program (torch.export.load; only from a source you trust)"
        except Exception as error:  # torch.export refuses many Python constructs: say which, keep the rest
            missing["model.pt2"] = f"torch.export could not trace the model ({_first_line(error)})"
        if importlib.util.find_spec("onnxscript") is None or importlib.util.find_spec("onnxruntime") is None:
            missing["model.onnx"] = "the compress extra is not installed (pip install 'distillkit[compress]')"
        else:
            try:
                export_onnx(model, folder / "model.onnx", inputs)
                files["model.onnx"] = "an ONNX graph (ONNX Runtime; loading it runs no code)"
            except CompressionError as error:
                missing["model.onnx"] = str(error)
        with torch.no_grad():
            output = model(*inputs)
        shape = list(inputs[0].shape[1:])
        outputs = int((output if isinstance(output, Tensor) else output[0]).shape[-1])
    description = {"format": 1, "files": files, "not_written": missing, "input_shape": shape, "outputs": outputs}
    write_text_atomic(folder / PORTABLE_FILE, json_text(description))
    write_text_atomic(folder / "README.md", _card(card or ModelCardInfo(), shape))
    return description


class ExportedModule(nn.Module):
    """A ``torch.export`` program's module for inference: ``model(x)`` runs it, and ``eval()`` / ``train()`` (which
    the program's own module refuses) are accepted and change nothing (the program was traced in eval mode).

    Attributes:
        exported: the ``torch.export.ExportedProgram`` (what ``torch.onnx.export`` takes as it is).
        program: its module (its weights are ``program.state_dict()``).
    """

    def __init__(self, exported: Any) -> None:
        super().__init__()
        self.__dict__["exported"] = exported
        self.__dict__["program"] = exported.module()  # not a child: train(False) would reach it and be refused

    def forward(self, *inputs: Tensor) -> Any:
        return self.program(*inputs)


def is_portable(folder: str | Path) -> bool:
    """Whether ``folder`` was written by :func:`save_portable`."""
    return (Path(folder) / PORTABLE_FILE).is_file()


def load_portable(folder: str | Path, *, trust_code: bool = False) -> nn.Module:
    """The model of a folder written by :func:`save_portable`: its ONNX graph through ONNX Runtime (no code from
    the folder runs), or with ``trust_code=True`` its ``torch.export`` program as a PyTorch module.

    Raises:
        UntrustedCodeError: the folder has only the ``torch.export`` program and ``trust_code`` is False.
        DistillkitError: the folder is not a portable model folder.
    """
    folder = Path(folder)
    if not is_portable(folder):
        raise DistillkitError(f"{folder} holds no {PORTABLE_FILE}: it was not written by save_portable (a run of "
                              "distillkit.distill(out=...) or 'distillkit export' of one)")
    files = json.loads((folder / PORTABLE_FILE).read_text()).get("files", {})
    if trust_code and "model.pt2" in files:
        return ExportedModule(torch.export.load(folder / "model.pt2"))
    if "model.onnx" in files:
        return OnnxModel(folder / "model.onnx")
    if "model.pt2" in files:
        raise UntrustedCodeError(f"{folder} holds the model as a torch.export program only (model.pt2), which "
                                 "torch.export.load may unpickle: pass trust_code=True (--trust-code) for a folder "
                                 "you wrote or trust")
    raise DistillkitError(f"{folder} holds only the weights (model.safetensors): load them into the model's own "
                          "class with load_state_dict")
