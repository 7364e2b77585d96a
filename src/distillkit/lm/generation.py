"""Generation for distillation: the teacher's responses as a data set (sequence-level KD, Kim & Rush 2016) and
the student's own continuations during training (on-policy KD, GKD: Agarwal et al. 2024).

Generation is Hugging Face's ``generate`` (the KV cache on, stopping at the end-of-sequence token) over batches
of prompts padded on the left, as decoder-only models need.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from distillkit.core.measures import evaluating
from distillkit.losses.tokens import IGNORE

__all__ = ["GenerationSettings", "OnPolicyMix", "generate_responses"]


@dataclass(frozen=True)
class GenerationSettings:
    """How responses are generated (recorded with a generated data set).

    Attributes:
        max_new_tokens: the longest response.
        sample: sample (else greedy decoding).
        temperature / top_p: sampling settings.
        seed: seeds the sampling.
        batch_size: prompts per ``generate`` call.
    """

    max_new_tokens: int = 64
    sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 16

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _left_padded(prompts: Sequence[Sequence[int]], pad: int, device: torch.device) -> tuple[Tensor, Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long, device=device)
    mask = torch.zeros((len(prompts), width), dtype=torch.long, device=device)
    for row, prompt in enumerate(prompts):
        if prompt:
            ids[row, width - len(prompt):] = torch.as_tensor(list(prompt), device=device)
            mask[row, width - len(prompt):] = 1
    return ids, mask


@torch.no_grad()
def generate_responses(model: nn.Module, prompts: Sequence[Sequence[int]], settings: GenerationSettings, *,
                       eos: int | None, pad: int) -> list[list[int]]:
    """The token ids ``model`` generates after each prompt (up to and with the end-of-sequence token)."""
    device = next(model.parameters()).device
    found: list[list[int]] = []
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(settings.seed)
    try:
        with evaluating(model):
            for start in range(0, len(prompts), settings.batch_size):
                part = prompts[start:start + settings.batch_size]
                ids, mask = _left_padded(part, pad, device)
                options: dict[str, Any] = {"max_new_tokens": settings.max_new_tokens, "do_sample": settings.sample,
                                           "pad_token_id": pad, "eos_token_id": eos}
                if settings.sample:
                    options.update(temperature=settings.temperature, top_p=settings.top_p)
                out = model.generate(ids, attention_mask=mask, **options)[:, ids.shape[1]:].tolist()
                for row in out:
                    found.append(row[: row.index(eos) + 1] if eos is not None and eos in row else row)
    finally:
        torch.random.set_rng_state(generator_state)
    return found


class OnPolicyMix:
    """A batch transform for on-policy distillation (GKD): with probability ``fraction`` (TRL's ``lmbda``) the
    responses of a batch of prompt / response blocks are replaced by the student's own continuations of the
    prompts, sampled now; the teacher then scores them in the same step (it runs online), and the loss is the
    divergence on the student's own tokens. Otherwise the batch keeps its responses (supervised KD).

    Args:
        student: the model being trained (it generates in eval mode, without gradients).
        fraction: the share of batches made on-policy, in ``[0, 1]``.
        settings: how the student samples (``max_new_tokens`` is capped by the room left in each block).
        eos / pad: the tokenizer's end-of-sequence and padding ids.
        seed: seeds the choice of batches.
    """

    def __init__(self, student: nn.Module, fraction: float, settings: GenerationSettings, *, eos: int | None,
                 pad: int, seed: int = 0) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"the on-policy fraction must be in [0, 1], got {fraction}")
        self.student, self.fraction, self.settings = student, fraction, settings
        self.eos, self.pad = eos, pad
        self.choice = random.Random(seed)
        self.on_policy_batches = 0

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        if "prompt_length" not in batch:
            raise KeyError("on-policy distillation needs prompt / response data (samples with prompt_length)")
        if self.choice.random() >= self.fraction:
            return dict(batch)
        self.on_policy_batches += 1
        ids, lengths = batch["input_ids"], batch["prompt_length"].tolist()
        width = ids.shape[1]
        prompts = [ids[row, :length].tolist() for row, length in enumerate(lengths)]
        room = max(1, min(self.settings.max_new_tokens, width - max(lengths)))
        settings = GenerationSettings(**{**self.settings.to_dict(), "max_new_tokens": room,
                                         "seed": self.choice.randrange(2**31)})
        responses = generate_responses(self.student, prompts, settings, eos=self.eos, pad=self.pad)
        new_ids = torch.full_like(ids, self.pad)
        mask = torch.zeros_like(batch["attention_mask"])
        labels = torch.full_like(batch["labels"], IGNORE)
        for row, (prompt, response) in enumerate(zip(prompts, responses)):
            tokens = (prompt + response)[:width]
            new_ids[row, :len(tokens)] = torch.as_tensor(tokens, device=ids.device)
            mask[row, :len(tokens)] = 1
            labels[row, len(prompt):len(tokens)] = torch.as_tensor(tokens[len(prompt):], device=ids.device)
        return {**batch, "input_ids": new_ids, "attention_mask": mask, "labels": labels}
