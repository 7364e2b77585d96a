"""Cross-lingual and cross-modal distillation (issue 16): the teacher reads one view, the student another.

Cross-lingual: the bundled English all-MiniLM-L6-v2 is the teacher; the student (``--student minilm-3``: the
teacher's layers 0, 2 and 4, its vocabulary extended by the characters of the training names it reads as [UNK];
or ``byte-cnn``: a byte-level CNN) learns on CLDR names of the training concepts (Reimers & Gurevych 2020: the
student's embedding of the English name and of its translation both match the teacher's embedding of the English
name). Retrieval X -> English on held-out concepts (no test concept is seen in training, in any language), for (a)
the teacher itself, (b) the same student trained on the same pairs without a teacher (contrastive, InfoNCE), (c) the
distilled student.

Cross-modal: the teacher is MiniLM fine-tuned on the English names of the training concepts to tell their kind
(territory, language, currency, script); an audio CNN learns the same task from the names spoken by eSpeak NG
(4 training voices), (a) from the labels alone, (b) distilled from the teacher's soft labels on the text;
tested on held-out names spoken by 2 held-out voices (names with a parenthesis, historic currencies and variants,
are left out: too long to speak in 4 s). A third audio student learns the teacher's sentence
embedding of the text (speech -> text retrieval among the held-out names).

Usage (about 30 minutes on 2 CPU cores, speech synthesized once into ~/.cache/distillkit/speech)::

    python benchmarks/paired.py                          # seeds 0 1 2, both parts
    python benchmarks/paired.py --parts crosslingual --seeds 0
    python benchmarks/paired.py --parts crosslingual --student byte-cnn
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

import torch

from distillkit.core.distiller import Distiller
from distillkit.core.terms import HardLabelTerm, SoftTargetTerm
from distillkit.data.splits import TextDataset, stratified_splits
from distillkit.evaluation.cost import count_weights, time_models
from distillkit.models import build_model
from distillkit.paired import (
    ContrastivePairTerm,
    EmbeddingDistillTerm,
    cldr_lexicon,
    cross_lingual_retrieval,
    embed_texts,
    translation_pairs,
)
from distillkit.paired.speech import SpeechCache, Synthesizer, Voice, spoken_concepts, spoken_names
from distillkit.text import (
    ByteCNNEncoder,
    SentenceEncoder,
    TransformerClassifier,
    layer_subset_student,
    minilm_path,
    retrieval_recall,
)
from distillkit.training.options import TrainOptions
from distillkit.training.trainer import Trainer

LANGUAGES = ["fr", "de", "es", "ru", "zh"]
TRAIN_VOICES = [Voice("en+m1", 170, 45), Voice("en+f2", 160, 60), Voice("en+m3", 185, 40), Voice("en+f4", 175, 70)]
TEST_VOICES = [Voice("en+m7", 165, 50), Voice("en+f5", 180, 65)]


def _fit(distiller: Distiller, data, options: TrainOptions, seed: int, batch_size: int = 64) -> None:
    Trainer(distiller, data, None, options, batch_size=batch_size, seed=seed, progress=False).fit()


# the two cross-lingual students and the settings each was tuned with (epochs, learning rate)
CROSSLINGUAL_STUDENTS = {"minilm-3": (12, 6e-4), "byte-cnn": (20, 3e-3)}


def _crosslingual_student(kind: str, teacher: SentenceEncoder, train_texts: list[str]) -> torch.nn.Module:
    if kind == "byte-cnn":
        return ByteCNNEncoder(teacher.embedding_dim, channels=128, layers=3)
    # the teacher's layers 0, 2 and 4 (DistilBERT's initialisation), its vocabulary extended by the characters of
    # the training names it reads as [UNK] (most Chinese ones)
    student = layer_subset_student(teacher, [0, 2, 4])
    student.cover_characters(train_texts)
    return student


def crosslingual(seed: int, epochs: int | None, kind: str = "minilm-3") -> dict:
    lexicon = cldr_lexicon(["en", *LANGUAGES])
    train, _, test = lexicon.split(seed=seed)
    teacher = SentenceEncoder()
    pairs = translation_pairs(lexicon, train, LANGUAGES)
    default_epochs, lr = CROSSLINGUAL_STUDENTS[kind]
    options = TrainOptions(epochs=epochs or default_epochs, lr=lr, optimizer="adamw", lr_schedule="cosine")
    results = {"teacher": cross_lingual_retrieval(teacher, lexicon, test, LANGUAGES)}
    torch.manual_seed(seed)
    alone = _crosslingual_student(kind, teacher, pairs.views["translation"])
    _fit(Distiller(None, alone, [ContrastivePairTerm("source")], student_input="translation"), pairs, options, seed)
    results["student alone"] = cross_lingual_retrieval(alone, lexicon, test, LANGUAGES)
    torch.manual_seed(seed)
    student = _crosslingual_student(kind, teacher, pairs.views["translation"])
    _fit(Distiller(teacher, student, [EmbeddingDistillTerm(loss="cosine")], teacher_input="source",
                   student_input="translation"), pairs, options, seed)
    results["distilled"] = cross_lingual_retrieval(student, lexicon, test, LANGUAGES)
    results["distilled en->teacher en"] = cross_lingual_retrieval(student, lexicon, test, ["en"],
                                                                  keys_model=teacher)["en"]["to_en"]
    for name, model in (("teacher", teacher), ("distilled", student)):  # English to English, each model both sides
        results[f"{name} en->en"] = cross_lingual_retrieval(model, lexicon, test, ["en"])["en"]["to_en"]
    names = [lexicon.names["en"][c] for c in test[:32]]
    results["cost"] = {"teacher": (count_weights(teacher), _latency(teacher, names)),
                       "student": (count_weights(student), _latency(student, names))}
    return results


def _latency(model, texts) -> float:
    model.eval()
    with torch.no_grad():
        for _ in range(3):
            model(texts[:1])
        start = time.perf_counter()
        for text in texts:
            model([text])
    return 1000 * (time.perf_counter() - start) / len(texts)


def crossmodal(seed: int, epochs: int, cache: SpeechCache, label_fraction: float = 1.0,
               teacher_labels: str = "same") -> dict:
    lexicon = cldr_lexicon(["en"])
    train, _, test = lexicon.split(seed=seed)
    train, test = spoken_concepts(lexicon, train), spoken_concepts(lexicon, test)
    labels = lexicon.labels()
    # labelled: the concepts whose kind is known (all of them, or a stratified fraction); the teacher and the audio
    # student alone learn from these labels, the distilled student from the teacher on the speech of every name
    labelled = train
    if label_fraction < 1.0:
        keep, _, _ = stratified_splits(labels[train].numpy(), test_size=1 - label_fraction, val_fraction=0.0,
                                       seed=seed)
        labelled = [train[i] for i in sorted(keep.tolist())]
    # the teacher's labels: the same fraction, or ("all") every training name, as when the text is the labelled
    # modality and only a few recordings are labelled (SoundNet; Gupta et al. 2016)
    taught = train if teacher_labels == "all" else labelled
    names = [lexicon.names["en"][c] for c in taught]
    text_set = TextDataset(names, torch.as_tensor([int(labels[c]) for c in taught]))
    torch.manual_seed(seed)
    teacher = TransformerClassifier.from_pretrained(minilm_path(), num_classes=len(lexicon.kinds))
    _fit(Distiller(None, teacher, student_input="text"), text_set,
         TrainOptions(epochs=3, lr=5e-5, optimizer="adamw", lr_schedule="linear", warmup_steps=10), seed, 32)
    train_audio = spoken_names(lexicon, train, TRAIN_VOICES, cache)
    labelled_audio = spoken_names(lexicon, labelled, TRAIN_VOICES, cache)
    test_audio = spoken_names(lexicon, test, TEST_VOICES, cache)
    shape = tuple(train_audio[0]["audio"].shape)
    options = TrainOptions(epochs=epochs, lr=2e-3, optimizer="adamw", lr_schedule="cosine")

    def accuracy(model, data, key) -> float:
        model.eval()
        with torch.no_grad():
            correct = 0
            for start in range(0, len(data), 256):
                rows = [data[i] for i in range(start, min(start + 256, len(data)))]
                inputs = torch.stack([r[key] for r in rows]) if key == "audio" else [r[key] for r in rows]
                correct += int((model(inputs).argmax(-1) == torch.stack([r["target"] for r in rows])).sum())
        return correct / len(data)

    results = {"teacher (text)": accuracy(teacher, test_audio, "text")}
    torch.manual_seed(seed)
    alone = build_model("audio_cnn", num_classes=len(lexicon.kinds), input_shape=shape)
    _fit(Distiller(None, alone, student_input="audio"), labelled_audio, options, seed)
    results["audio alone"] = accuracy(alone, test_audio, "audio")
    torch.manual_seed(seed)
    student = build_model("audio_cnn", num_classes=len(lexicon.kinds), input_shape=shape)
    # with every label: soft and hard targets; with a fraction: the teacher's soft targets on every spoken name only
    terms = ([SoftTargetTerm(0.7, temperature=2.0), HardLabelTerm(0.3)] if label_fraction >= 1.0
             else [SoftTargetTerm(1.0, temperature=2.0)])
    _fit(Distiller(teacher, student, terms, teacher_input="text", student_input="audio"), train_audio, options, seed)
    results["audio distilled"] = accuracy(student, test_audio, "audio")
    # speech -> text retrieval: an audio student that learns the sentence embedding of the text
    encoder = SentenceEncoder()
    torch.manual_seed(seed)
    listener = build_model("audio_cnn", num_classes=encoder.embedding_dim, input_shape=shape)
    _fit(Distiller(encoder, listener, [EmbeddingDistillTerm(loss="cosine")], teacher_input="text",
                   student_input="audio"), train_audio, options, seed)
    listener.eval()
    with torch.no_grad():
        speech = torch.cat([listener(torch.stack([test_audio[i]["audio"] for i in range(s, min(s + 256,
                                                                                                len(test_audio)))]))
                            for s in range(0, len(test_audio), 256)])
    texts = embed_texts(encoder, [test_audio[i]["text"] for i in range(len(test_audio))])
    results["speech->text retrieval"] = retrieval_recall(speech, texts)
    example = test_audio[0]["audio"].unsqueeze(0)
    (audio_ms, _), = time_models([student], example, rounds=2, iterations=20, batch=16, batch_calls=1)
    results["cost"] = {"teacher": (count_weights(teacher), _latency(teacher, [test_audio[i]["text"]
                                                                             for i in range(32)])),
                       "student": (count_weights(student), audio_ms)}
    return results


def _mean_std(values: list[float]) -> str:
    mean = 100 * statistics.fmean(values)
    std = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:5.1f} +/- {std:4.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--parts", nargs="+", choices=["crosslingual", "crossmodal"],
                        default=["crosslingual", "crossmodal"])
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs (default: 20 cross-modal; cross-lingual, the student's own: "
                        + ", ".join(f"{k} {v[0]}" for k, v in CROSSLINGUAL_STUDENTS.items()) + ")")
    parser.add_argument("--student", choices=list(CROSSLINGUAL_STUDENTS), default="minilm-3",
                        help="cross-lingual student: the teacher's layers 0, 2, 4 with its vocabulary extended to the "
                        "training names' characters (minilm-3), or a byte-level CNN (byte-cnn)")
    parser.add_argument("--label-fraction", type=float, default=1.0,
                        help="cross-modal: the fraction of training names whose kind is known (1: all)")
    parser.add_argument("--teacher-labels", choices=["same", "all"], default="same",
                        help="cross-modal: the text teacher learns the same labelled fraction, or every training name")
    parser.add_argument("--speech-cache", type=Path, default=Path.home() / ".cache" / "distillkit" / "speech")
    args = parser.parse_args()
    logging.getLogger("distillkit").setLevel(logging.WARNING)
    if "crosslingual" in args.parts:
        runs = []
        for seed in args.seeds:
            start = time.perf_counter()
            runs.append(crosslingual(seed, args.epochs, args.student))
            print(f"[crosslingual] seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
        print(f"\ncross-lingual retrieval X -> English on held-out concepts (top-1 %, mean +/- std over seeds; student "
              f"{args.student})")
        print("| model | " + " | ".join(LANGUAGES) + " | mean |")
        print("|---|" + "---:|" * (len(LANGUAGES) + 1))
        for model in ("teacher", "student alone", "distilled"):
            cells = [_mean_std([r[model][code]["to_en"] for r in runs]) for code in LANGUAGES]
            mean = _mean_std([statistics.fmean(r[model][code]["to_en"] for code in LANGUAGES) for r in runs])
            print(f"| {model} | " + " | ".join(cells) + f" | {mean} |")
        print("English -> X (from_en): " + "; ".join(
            f"{model} " + ", ".join(f"{code} {_mean_std([r[model][code]['from_en'] for r in runs])}"
                                    for code in LANGUAGES) for model in ("teacher", "distilled")))
        print(f"the distilled student's English embedding finds the teacher's of the same name: "
              f"{_mean_std([r['distilled en->teacher en'] for r in runs])}% (per seed: "
              + ", ".join(f"{100 * r['distilled en->teacher en']:.1f}" for r in runs) + ")")
        print(f"English -> English, each model both sides: teacher {_mean_std([r['teacher en->en'] for r in runs])}%, "
              f"distilled {_mean_std([r['distilled en->en'] for r in runs])}%")
        cost = runs[-1]["cost"]
        print(f"cost: teacher {cost['teacher'][0]:,} weights, {cost['teacher'][1]:.2f} ms a name; student "
              f"{cost['student'][0]:,} weights, {cost['student'][1]:.2f} ms a name (batch 1, CPU)")
    if "crossmodal" in args.parts:
        cache = SpeechCache(args.speech_cache, Synthesizer(max_seconds=4.0))
        runs = []
        for seed in args.seeds:
            start = time.perf_counter()
            runs.append(crossmodal(seed, args.epochs or 20, cache, args.label_fraction, args.teacher_labels))
            print(f"[crossmodal] seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
        print(f"\ncross-modal: the kind of a spoken CLDR name, held-out names and held-out voices (%); audio labels for "
              f"{100 * args.label_fraction:g}% of the training names, text labels for "
              f"{'all of them' if args.teacher_labels == 'all' else 'the same names'}")
        for key in ("teacher (text)", "audio alone", "audio distilled", "speech->text retrieval"):
            print(f"| {key} | {_mean_std([r[key] for r in runs])} | per seed: "
                  + ", ".join(f"{100 * r[key]:.1f}" for r in runs) + " |")
        cost = runs[-1]["cost"]
        print(f"cost: text teacher {cost['teacher'][0]:,} weights, {cost['teacher'][1]:.2f} ms a name; audio student "
              f"{cost['student'][0]:,} weights, {cost['student'][1]:.2f} ms an utterance (batch 1, CPU)")


if __name__ == "__main__":
    main()
