"""The token-level loss at a language model's size: time of a forward and backward pass, and the bytes autograd
keeps for the backward pass beyond the logits (the memory the loss itself adds), for the plain form, the chunked
form, a truncated (top-32) teacher and the language-model loss, on one batch of 4 x 128 positions over SmolLM2's
49,152-token vocabulary (random logits: the cost does not depend on the values).

    python benchmarks/lm_losses.py        # a few seconds
"""

from __future__ import annotations

import time

import torch

from distillkit.losses.tokens import SparseTeacher, TokenLoss, next_token_loss, token_divergence


def kept_bytes(run, existing) -> int:
    """Bytes of new tensors saved for the backward pass (each storage once; ``existing`` not counted)."""
    skip = {t.untyped_storage().data_ptr() for t in existing}
    seen: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in skip:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = run()
    loss.backward()
    return sum(seen.values())


def main() -> None:
    torch.manual_seed(0)
    batch, length, vocab, k = 4, 128, 49152, 32
    logits = torch.randn(batch, length, vocab, requires_grad=True)
    teacher = torch.randn(batch, length, vocab)
    logprobs, ids = torch.log_softmax(teacher, -1).topk(k, dim=-1)
    stored = SparseTeacher(ids.to(torch.int32), logprobs.half().float())
    mask = torch.ones(batch, length, dtype=torch.bool)
    labels = torch.randint(0, vocab, (batch, length))
    cases = {
        "forward KL, full teacher, plain": lambda: token_divergence(logits, teacher, mask, TokenLoss(chunk_size=0)),
        "forward KL, full teacher, chunks of 128": lambda: token_divergence(logits, teacher, mask,
                                                                            TokenLoss(chunk_size=128)),
        "forward KL, stored top-32 teacher": lambda: token_divergence(logits, stored, mask, TokenLoss()),
        "language-model loss, chunks of 512": lambda: next_token_loss(logits, labels, chunk_size=512),
    }
    one = logits.numel() * 4
    print(f"{'loss':42s} {'fwd+bwd s':>10s} {'kept MB':>9s} {'x one [B,L,V]':>14s}")
    for name, run in cases.items():
        times = []
        for _ in range(4):
            logits.grad = None
            start = time.perf_counter()
            run().backward()
            times.append(time.perf_counter() - start)
        logits.grad = None
        kept = kept_bytes(run, (logits, teacher))
        print(f"{name:42s} {min(times):10.3f} {kept / 1e6:9.1f} {kept / one:14.2f}")


if __name__ == "__main__":
    main()
