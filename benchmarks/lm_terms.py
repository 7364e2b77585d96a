"""Hidden-state and attention-relation terms on SmolLM2: do they add to token-level KD for a depth-pruned student?

SmolLM2-135M-Instruct teaches its own importance-chosen 15-layer cut on English prose (the top-k benchmark's
student, blocks and steps); the same student (same initial weights, blocks and steps) is trained on the
language-model loss alone, by online forward KL from the full teacher distribution, by that KL plus hidden-state
terms with a layer map, and by that KL plus MiniLM v2's self-attention relation terms on the last layer.

The layer map: the student's layer ``i`` is the teacher's layer ``kept[i]``, so after its layers 4 and 9 the
student's hidden state is matched (cosine distance, no adapter: the widths are equal) to the teacher's just before
the teacher's next kept layer, the input that layer had in the teacher, and its last layer to the teacher's last.
The relation terms compare the query-query, key-key and value-value relations of the student's last attention
layer with the teacher's (4 relation heads; KL, Wang et al. 2021). Each extra term has weight 1 beside the KL.

    python benchmarks/lm_terms.py --steps 40        # about 15 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

from lm_prose import fit, importance_cut, prose, prose_arguments

from distillkit.core.terms import AttentionRelationTerm, FeatureTerm
from distillkit.lm import compare_lms, decoder_layers, lm_distiller
from distillkit.losses.tokens import TokenLoss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    prose_arguments(parser, steps=40)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-lm-terms"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    setup = prose(args.steps, args.batch, args.block, args.seed)
    teacher, train, test = setup.teacher, setup.train, setup.test
    kept, initial = importance_cut(setup, 15)
    depth = len(decoder_layers(teacher))
    last = len(kept) - 1
    # after the student's layer i, the teacher's state just before its next kept layer (the last: the last layer)
    pairs = [(i, kept[i + 1] - 1 if i < last else depth - 1) for i in (4, 9, last)]
    hidden = [FeatureTerm(f"model.layers.{s}", f"model.layers.{t}", 1.0, loss="cosine") for s, t in pairs]
    attention = [AttentionRelationTerm(f"model.layers.{last}.self_attn", f"model.layers.{depth - 1}.self_attn", 1.0,
                                       heads=4)]
    kl = TokenLoss("forward_kl", chunk_size=256)
    runs = {"LM loss alone": None, "KD (forward KL)": [], "KD + hidden states": hidden,
            "KD + attention relations": attention}
    rows: dict[str, dict] = {}
    models = {"teacher": teacher}
    for name, extra in runs.items():
        student = copy.deepcopy(initial).train()
        distiller = (lm_distiller(None, student) if extra is None else
                     lm_distiller(teacher, student, loss=kl, extra=[copy.deepcopy(t) for t in extra]))
        rows[name] = {"train_seconds": fit(name, distiller, train, args)}
        models[name] = student
    for name, figures in compare_lms(models, test, batch_size=8).items():
        rows.setdefault(name, {}).update(figures)
    print(f"\nkept layers {kept}; hidden-state pairs (student, teacher) {pairs}")
    print(f"{'run':28s} {'test ppl':>9s} {'agree %':>8s} {'KL':>7s} {'train s':>8s}")
    for name, row in rows.items():
        agree = row.get("teacher_agreement")
        print(f"{name:28s} {row['perplexity']:9.2f} {'' if agree is None else format(100 * agree, '.1f'):>8s} "
              f"{row.get('kl_to_teacher', 0):7.3f} {row.get('train_seconds', 0):8.0f}")
    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "kept": kept, "pairs": pairs, "rows": rows,
               "minutes": (time.perf_counter() - started) / 60}
    (args.out / "lm_terms.json").write_text(json.dumps(summary, indent=1))
    print(f"total {summary['minutes']:.0f} min; {args.out / 'lm_terms.json'}")


if __name__ == "__main__":
    main()
