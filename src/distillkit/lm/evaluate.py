"""Language models side by side: perplexity on held-out text, next-token agreement with the teacher and the mean
KL to it, size, generation speed, and a few generations from fixed prompts.

Every model is scored on the same blocks in one pass (the teacher runs once per batch); a figure is a mean over
the scored tokens (:func:`~distillkit.lm.terms.scored_positions`), so a prompt's tokens never count.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from distillkit.core.measures import evaluating
from distillkit.data.base import TensorDictDataset
from distillkit.lm.terms import lm_inputs, scored_positions
from distillkit.losses.tokens import TokenLoss, next_labels, token_divergence

__all__ = ["GenerationSpeed", "compare_lms", "generate_text", "generation_speed"]


@dataclass
class _Sums:
    nll: float = 0.0
    correct: float = 0.0
    agree: float = 0.0
    kl: float = 0.0
    tokens: float = 0.0

    def figures(self, with_teacher: bool) -> dict[str, float]:
        tokens = max(self.tokens, 1.0)
        found = {"loss": self.nll / tokens, "perplexity": math.exp(min(self.nll / tokens, 50.0)),
                 "accuracy": self.correct / tokens, "tokens": self.tokens}
        if with_teacher:
            found.update({"teacher_agreement": self.agree / tokens, "kl_to_teacher": self.kl / tokens})
        return found


def compare_lms(models: Mapping[str, nn.Module], blocks: TensorDictDataset, *, teacher: str | None = "teacher",
                batch_size: int = 8) -> dict[str, dict[str, float]]:
    """Per model: ``loss`` (mean next-token cross-entropy), ``perplexity``, ``accuracy`` (top-1 next token),
    and, against the model named ``teacher``, ``teacher_agreement`` (same top-1 token) and ``kl_to_teacher``
    (mean ``KL(teacher || model)`` per token).

    Args:
        models: name -> causal LM (each on its device; eval mode inside, train mode restored).
        blocks: token blocks with ``labels``.
        teacher: the name of the reference model (``None``: no teacher figures).
        batch_size: blocks per pass.
    """
    sums = {name: _Sums() for name in models}
    reference = models.get(teacher) if teacher is not None else None
    fields = blocks.fields
    for start in range(0, len(blocks), batch_size):
        batch = {key: value[start:start + batch_size] for key, value in fields.items()}
        mask = scored_positions(batch)
        targets = next_labels(batch["labels"])
        teacher_logits = _logits(reference, batch) if reference is not None else None
        for name, model in models.items():
            logits = teacher_logits if model is reference and teacher_logits is not None else _logits(model, batch)
            _add(sums[name], logits, targets, mask, teacher_logits if model is not reference else None)
    return {name: s.figures(reference is not None and models[name] is not reference) for name, s in sums.items()}


def _logits(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    device = next(model.parameters()).device
    with evaluating(model):
        return model(**{k: v.to(device) for k, v in lm_inputs(batch).items()}).logits.float().cpu()


def _add(sums: _Sums, logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
         teacher_logits: torch.Tensor | None) -> None:
    scored = logits[mask]
    wanted = targets[mask]
    sums.nll += float(nn.functional.cross_entropy(scored, wanted, reduction="sum"))
    sums.correct += float((scored.argmax(-1) == wanted).sum())
    count = float(mask.sum())
    sums.tokens += count
    if teacher_logits is not None:
        sums.agree += float((scored.argmax(-1) == teacher_logits[mask].argmax(-1)).sum())
        sums.kl += count * float(token_divergence(logits, teacher_logits, mask, TokenLoss("forward_kl", chunk_size=0)))


@dataclass(frozen=True)
class GenerationSpeed:
    """Generated tokens per second at one batch size (greedy decoding with the KV cache, ``new_tokens`` each after
    a prompt of ``prompt_tokens``), on ``device``."""

    batch_size: int
    prompt_tokens: int
    new_tokens: int
    tokens_per_second: float
    device: str
    peak_memory_mb: float | None


@torch.no_grad()
def generation_speed(model: nn.Module, prompt_ids: Sequence[int], *, batch_size: int = 1, new_tokens: int = 32,
                     repeats: int = 3) -> GenerationSpeed:
    """How fast ``model`` generates: the median of ``repeats`` timed generations after one untimed (all of
    ``new_tokens``, the end-of-sequence token ignored, so every model makes as many). Peak memory is measured on a
    CUDA device only (``None`` on the CPU)."""
    device = next(model.parameters()).device
    prompt = torch.as_tensor([list(prompt_ids)] * batch_size, device=device)
    options = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False,
               "attention_mask": torch.ones_like(prompt), "pad_token_id": 0}
    seconds = []
    cuda = device.type == "cuda"
    with evaluating(model):
        model.generate(prompt, **options)
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(repeats):
            if cuda:
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            model.generate(prompt, **options)
            if cuda:
                torch.cuda.synchronize(device)
            seconds.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 1e6 if cuda else None
    middle = sorted(seconds)[len(seconds) // 2]
    return GenerationSpeed(batch_size, len(prompt_ids), new_tokens, batch_size * new_tokens / middle, str(device), peak)


@torch.no_grad()
def generate_text(model: nn.Module, tokenizer: Any, prompts: Sequence[list[int]], *, new_tokens: int = 32,
                  seed: int = 0, sample: bool = False) -> list[str]:
    """Each prompt's continuation (greedy, or sampled with ``seed``), decoded; generation stops at the
    end-of-sequence token."""
    device = next(model.parameters()).device
    texts = []
    with evaluating(model):
        for ids in prompts:
            torch.manual_seed(seed)
            prompt = torch.as_tensor([ids], device=device)
            out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                                 do_sample=sample, pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
            texts.append(tokenizer.decode(out[0, len(ids):], skip_special_tokens=True))
    return texts
