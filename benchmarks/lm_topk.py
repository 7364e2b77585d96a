"""The teacher's offline top-k file: how much k costs in quality, how small the file is, and how fast a student
trains from it, against online distillation from the full distribution on the same tokens (one run, ratios).

SmolLM2-135M-Instruct teaches its own importance-chosen 15-layer cut on English prose; the same student (same
initial weights, same blocks, same steps) is distilled with forward KL online from the full teacher distribution,
and offline from the teacher's top-k for each k (one top-128 file is written by the teacher; each smaller k is a
file of its own cut from it, since its first k tokens are the top-k). Targets (issue 33): at k = 32 held-out perplexity within 2% of online KD, at least
100x smaller per token than full fp16 logits, and a student epoch from the file within 1.15x of the same
student's epoch on the language-model loss alone.

    python benchmarks/lm_topk.py --steps 100        # about 35 minutes on 2 CPU cores
    python benchmarks/lm_topk.py --steps 40 --alpha 0.5   # KD beside the language-model loss, half and half
    python benchmarks/lm_topk.py --steps 40 --alpha 0.5 --ks 32 --sampled 32:32 32:16   # sampled slots

``--sampled K:S`` adds a row from a file of ``K`` slots per token whose last ``S`` are draws from the teacher's
distribution beyond its top ``K - S`` (``32:32``: Random Sampling KD, Anshumann et al. 2025; each its own teacher
pass, seeded by ``--seed``).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

from lm_prose import fit, importance_cut, prose, prose_arguments

from distillkit.lm import TopKFile, compare_lms, lm_distiller
from distillkit.losses.tokens import TokenLoss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    prose_arguments(parser, steps=100)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--sampled", nargs="*", default=[], metavar="K:S",
                        help="rows from files of K slots whose last S are draws from the teacher (see above)")
    parser.add_argument("--alpha", type=float, default=1.0,
                        help="the divergence's weight in every KD row; the language-model loss gets 1 - alpha")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-lm-topk"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    setup = prose(args.steps, args.batch, args.block, args.seed)
    teacher, train, test = setup.teacher, setup.train, setup.test
    t = time.perf_counter()
    top = TopKFile.build(teacher, setup.tokenizer, train, args.out / "topk", k=max(args.ks), batch_size=8)
    teacher_pass = time.perf_counter() - t
    vocab = top.manifest.vocab_size
    layers, initial = importance_cut(setup, 15)

    kd = TokenLoss("forward_kl", chunk_size=256)
    runs = {"LM loss alone": (None, train, None)}
    runs["online KD, full distribution"] = (teacher, train, kd)
    slots: dict[str, int] = {}  # stored tokens per position of each offline row
    for k in args.ks:  # each k its own file, cut from the widest one (the teacher ran once)
        runs[f"offline KD, top-{k}"] = (None, top.narrowed(k, args.out / "topk").attach(train), kd)
        slots[f"offline KD, top-{k}"] = k
    passes = {f"top-{max(args.ks)}": teacher_pass}  # seconds of each file's teacher pass (near 0 when reused)
    for pair in args.sampled:
        k, sampled = (int(part) for part in pair.split(":"))
        t = time.perf_counter()
        file = TopKFile.build(teacher, setup.tokenizer, train, args.out / "topk", k=k, sampled=sampled, seed=args.seed,
                              batch_size=8)
        passes[file.manifest.kind] = time.perf_counter() - t
        name = f"offline KD, {file.manifest.kind}"
        runs[name], slots[name] = (None, file.attach(train), kd), k
    print("teacher passes: " + ", ".join(f"{kind} {seconds:.0f} s" for kind, seconds in passes.items()), flush=True)
    rows: dict[str, dict] = {}
    models = {"teacher": teacher}
    for name, (source, data, loss) in runs.items():
        student = copy.deepcopy(initial).train()
        distiller = (lm_distiller(None, student) if loss is None else
                     lm_distiller(source, student, loss=loss, alpha=args.alpha, offline=source is None))
        rows[name] = {"train_seconds": fit(name, distiller, data, args)}
        models[name] = student
    for name, figures in compare_lms(models, test, batch_size=8).items():
        rows.setdefault(name, {}).update(figures)
    full_bytes = 2 * vocab  # fp16 logits per token
    base = rows["LM loss alone"]["train_seconds"]
    online = rows["online KD, full distribution"]
    print(f"\n{'run':40s} {'test ppl':>9s} {'vs online':>10s} {'agree %':>8s} {'KL':>7s} {'bytes/token':>12s} {'time x LM':>10s}")
    for name, row in rows.items():
        if name == "teacher":
            print(f"{name:40s} {row['perplexity']:9.2f}")
            continue
        k = slots.get(name)
        size = f"{k * 4}" if k else (f"{full_bytes} (fp16)" if "online" in name else "")
        print(f"{name:40s} {row['perplexity']:9.2f} {row['perplexity'] / online['perplexity'] - 1:+10.1%} "
              f"{100 * row['teacher_agreement']:8.1f} {row['kl_to_teacher']:7.3f} {size:>12s} {row['train_seconds'] / base:10.2f}")
    verdict = {}
    for name in [n for n, k in slots.items() if k == 32]:  # the target's file size: top-32 and sampled 32-slot files
        row = rows[name]
        verdict[name] = {"ppl_vs_online": row["perplexity"] / online["perplexity"] - 1,
                         "smaller_than_fp16_logits": full_bytes / (32 * 4),
                         "epoch_vs_lm_alone": row["train_seconds"] / base,
                         "speedup_over_online": online["train_seconds"] / row["train_seconds"]}
        figures = verdict[name]
        print(f"{name}: perplexity {figures['ppl_vs_online']:+.1%} against online KD (target within 2%); "
              f"{figures['smaller_than_fp16_logits']:.0f}x smaller than fp16 logits (target >= 100x); an epoch "
              f"{figures['epoch_vs_lm_alone']:.2f}x the LM-loss epoch (target <= 1.15x), "
              f"{figures['speedup_over_online']:.2f}x faster than online KD")
    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows, "verdict": verdict,
               "teacher_pass_seconds": passes, "minutes": (time.perf_counter() - started) / 60}
    (args.out / "lm_topk.json").write_text(json.dumps(summary, indent=1))
    print(f"total {summary['minutes']:.0f} min; {args.out / 'lm_topk.json'}")


if __name__ == "__main__":
    main()
