"""Token-level divergences against direct computations, truncation with a rest bucket, and the chunked form."""

import math

import pytest
import torch

from distillkit.losses.tokens import (
    IGNORE,
    NEVER,
    SparseTeacher,
    TokenLoss,
    next_token_loss,
    token_divergence,
    truncate,
)


def _direct(p, q, kind, beta=0.5, skew=0.1):
    """The textbook formulas on probability vectors (float64)."""
    kl = lambda a, b: float((a * (a / b).log()).sum())  # noqa: E731
    if kind == "forward_kl":
        return kl(p, q)
    if kind == "reverse_kl":
        return kl(q, p)
    if kind == "jsd":
        m = beta * p + (1 - beta) * q
        return beta * kl(p, m) + (1 - beta) * kl(q, m)
    if kind == "tvd":
        return 0.5 * float((p - q).abs().sum())
    if kind == "skew_kl":
        return kl(p, skew * p + (1 - skew) * q)
    return kl(q, skew * q + (1 - skew) * p)


KINDS = ["forward_kl", "reverse_kl", "jsd", "tvd", "skew_kl", "skew_reverse_kl"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_each_divergence_equals_its_direct_computation(kind, temperature):
    torch.manual_seed(0)
    student, teacher = torch.randn(1, 1, 7), torch.randn(1, 1, 7)
    value = token_divergence(student, teacher, torch.ones(1, 1, dtype=torch.bool),
                             TokenLoss(kind, temperature=temperature, beta=0.3, skew=0.2))
    p = torch.softmax(teacher.double()[0, 0] / temperature, -1)
    q = torch.softmax(student.double()[0, 0] / temperature, -1)
    assert float(value) == pytest.approx(temperature**2 * _direct(p, q, kind, beta=0.3, skew=0.2), rel=1e-4)


def test_forward_and_reverse_kl_differ_and_swap_with_the_models():
    torch.manual_seed(1)
    a, b = torch.randn(1, 1, 9) * 2, torch.randn(1, 1, 9)
    mask = torch.ones(1, 1, dtype=torch.bool)
    forward = float(token_divergence(a, b, mask, TokenLoss("forward_kl")))
    reverse = float(token_divergence(a, b, mask, TokenLoss("reverse_kl")))
    assert forward != pytest.approx(reverse, rel=1e-2)  # negative control: they are not the same number
    assert reverse == pytest.approx(float(token_divergence(b, a, mask, TokenLoss("forward_kl"))), rel=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_top_k_keeps_k_tokens_and_the_rest_as_one_bucket(kind):
    torch.manual_seed(2)
    student, teacher = torch.randn(1, 1, 10), torch.randn(1, 1, 10) * 3
    value = token_divergence(student, teacher, torch.ones(1, 1, dtype=torch.bool), TokenLoss(kind, top_k=3))
    p, q = torch.softmax(teacher.double()[0, 0], -1), torch.softmax(student.double()[0, 0], -1)
    top = p.topk(3).indices
    rest = torch.ones(10, dtype=torch.bool)
    rest[top] = False
    bucket = lambda d: torch.cat([d[top], d[rest].sum().reshape(1)])  # noqa: E731
    assert float(value) == pytest.approx(_direct(bucket(p), bucket(q), kind), rel=1e-4)
    # a truncated divergence is still a divergence: 0 where the student agrees on the kept tokens and the rest
    same_buckets = teacher.clone()
    same_buckets[0, 0, rest] = same_buckets[0, 0, rest].flip(0)  # the rest reshuffled, its mass the same
    assert float(token_divergence(same_buckets, teacher, torch.ones(1, 1, dtype=torch.bool),
                                  TokenLoss(kind, top_k=3))) == pytest.approx(0.0, abs=1e-6)


def test_top_p_keeps_the_nucleus():
    logprobs = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    kept = truncate(logprobs, top_k=None, top_p=0.75).logprobs.exp()
    assert torch.allclose(kept[0, :2], torch.tensor([0.5, 0.3])) and float(kept[0, 2:].sum()) == 0.0
    assert truncate(logprobs, top_k=None, top_p=0.1).logprobs.exp()[0, 0] == pytest.approx(0.5)  # at least one


def test_a_sparse_teacher_from_a_file_gives_what_the_online_top_k_gives():
    torch.manual_seed(3)
    student, teacher = torch.randn(2, 5, 12, requires_grad=True), torch.randn(2, 5, 12) * 2
    mask = torch.rand(2, 5) > 0.3
    for kind in KINDS:
        loss = TokenLoss(kind, top_k=4, temperature=1.0)
        online = token_divergence(student, teacher, mask, loss)
        logprobs, ids = torch.log_softmax(teacher, -1).topk(8, dim=-1)
        stored = SparseTeacher(ids.to(torch.int16), logprobs.half().float())  # as a file stores them (k=8 >= 4)
        offline = token_divergence(student, stored, mask, loss)
        assert float(offline.detach()) == pytest.approx(float(online.detach()), rel=2e-3, abs=1e-5), kind


@pytest.mark.parametrize("kind", ["forward_kl", "jsd", "reverse_kl"])
def test_the_chunked_loss_equals_the_plain_one_with_the_same_gradient(kind):
    torch.manual_seed(4)
    teacher = torch.randn(2, 16, 50)
    mask = torch.rand(2, 16) > 0.2
    values, grads = [], []
    for chunk in (0, 5):
        student = torch.randn(2, 16, 50, generator=torch.Generator().manual_seed(9)).requires_grad_()
        value = token_divergence(student, teacher, mask, TokenLoss(kind, top_k=8, chunk_size=chunk))
        value.backward()
        values.append(float(value))
        grads.append(student.grad)
    assert values[0] == pytest.approx(values[1], rel=1e-6)
    assert torch.allclose(grads[0], grads[1], atol=1e-7)
    assert float(grads[0][~mask].abs().sum()) == 0.0  # a position that does not count gets no gradient


def _bytes_kept_for_backward(fn, inputs):
    """Bytes of the new tensors autograd keeps for the backward pass (each storage once; the ``inputs``, which exist
    anyway, not counted)."""
    seen = {}
    existing = {tensor.untyped_storage().data_ptr() for tensor in inputs}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in existing:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn()
    return sum(seen.values())


def test_the_chunked_loss_keeps_far_fewer_bytes_for_the_backward_pass():
    torch.manual_seed(5)
    logits = torch.randn(2, 64, 2000, requires_grad=True)
    teacher = torch.randn(2, 64, 2000)
    mask = torch.ones(2, 64, dtype=torch.bool)
    one_tensor = logits.numel() * 4
    plain = _bytes_kept_for_backward(lambda: token_divergence(logits, teacher, mask, TokenLoss(chunk_size=0)),
                                     (logits, teacher))
    chunked = _bytes_kept_for_backward(lambda: token_divergence(logits, teacher, mask, TokenLoss(chunk_size=16)),
                                       (logits, teacher))
    assert plain >= 2 * one_tensor  # the plain form keeps new [B, L, V] tensors of its own (negative control)
    assert chunked <= 0.01 * one_tensor  # the chunked one: nothing but the positions of each chunk


def test_the_language_model_loss_is_the_shifted_cross_entropy_over_scored_tokens():
    torch.manual_seed(6)
    logits = torch.randn(2, 6, 11)
    labels = torch.randint(0, 11, (2, 6))
    labels[0, :3] = IGNORE  # a prompt: not scored
    expected = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1),
                                                 ignore_index=IGNORE)
    for chunk in (0, 3):
        assert float(next_token_loss(logits, labels, chunk_size=chunk)) == pytest.approx(float(expected), rel=1e-6)


def test_label_smoothing_mixes_the_label_with_the_mean_over_the_vocabulary():
    torch.manual_seed(7)
    logits = torch.randn(2, 5, 9, requires_grad=True)
    labels = torch.randint(0, 9, (2, 5))
    labels[1, 3:] = IGNORE  # padding: not scored
    logp = torch.log_softmax(logits.detach()[:, :-1], dim=-1)
    targets, scored = labels[:, 1:], labels[:, 1:] != IGNORE
    nll = -logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)[scored]
    uniform = -logp.mean(-1)[scored]  # the cross-entropy against the uniform distribution
    for eps in (0.0, 0.1, 0.3):
        expected = float(((1 - eps) * nll + eps * uniform).mean())
        for chunk in (0, 2):
            got = next_token_loss(logits, labels, chunk_size=chunk, label_smoothing=eps)
            assert float(got) == pytest.approx(expected, rel=1e-6)
    assert float(next_token_loss(logits, labels, label_smoothing=0.1)) != pytest.approx(float(nll.mean()))  # control
    with pytest.raises(ValueError, match="label_smoothing"):
        next_token_loss(logits, labels, label_smoothing=1.0)


def test_bad_options_are_refused_by_name():
    for kwargs, match in [({"divergence": "kl"}, "unknown divergence"), ({"beta": 1.0}, "beta"),
                          ({"temperature": 0}, "temperature"), ({"top_p": 1.5}, "top_p")]:
        with pytest.raises(ValueError, match=match):
            TokenLoss(**kwargs)
    with pytest.raises(ValueError, match="share a tokenizer"):
        token_divergence(torch.zeros(1, 2, 5), torch.zeros(1, 2, 6), torch.ones(1, 2, dtype=torch.bool), TokenLoss())
    assert math.isfinite(float(token_divergence(torch.zeros(1, 2, 5), torch.zeros(1, 2, 5),
                                                torch.zeros(1, 2, dtype=torch.bool), TokenLoss())))


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_the_bucketed_student_gradient_equals_autograd_of_the_plain_formula(temperature):
    """The student's buckets have a hand-written backward pass; autograd of the formula is the reference."""
    from distillkit.losses.tokens import _StudentBuckets

    torch.manual_seed(7)
    logits = torch.randn(6, 40, dtype=torch.float64) * 3
    ids = torch.randn(6, 40).topk(5, dim=-1).indices
    kept = torch.ones(6, 5, dtype=torch.bool)
    kept[0, 3:] = False  # a nucleus that kept three tokens
    weights = torch.randn(6, 6, dtype=torch.float64)

    def reference(z):
        log = torch.log_softmax(z / temperature, dim=-1)
        chosen = log.gather(-1, ids).masked_fill(~kept, -1e4)
        hidden = log.scatter(-1, ids, torch.where(kept, torch.tensor(-1e4, dtype=z.dtype), log.gather(-1, ids)))
        return torch.cat([chosen, torch.logsumexp(hidden, -1, keepdim=True)], -1)

    ours = logits.clone().requires_grad_()
    (_StudentBuckets.apply(ours, ids, kept, temperature) * weights).sum().backward()
    plain = logits.clone().requires_grad_()
    (reference(plain) * weights).sum().backward()
    assert torch.allclose(_StudentBuckets.apply(logits, ids, kept, temperature), reference(logits), atol=1e-9)
    assert torch.allclose(ours.grad, plain.grad, atol=1e-9)
    assert not torch.allclose(ours.grad, torch.zeros_like(ours.grad))  # negative control: a gradient at all


def test_a_token_in_a_kept_and_a_slot_not_kept_counts_once_where_the_kept_tokens_hold_nearly_all_the_mass():
    # (a sampled offline file stores a duplicate draw as a slot of no mass; a student this sure of its tokens has its
    # rest summed directly, where the duplicate must stay hidden)
    student = torch.zeros(1, 1, 30)
    student[..., 3], student[..., 7] = 12.0, 11.0
    student.requires_grad_()
    mask = torch.ones(1, 1, dtype=torch.bool)
    once = SparseTeacher(torch.tensor([[[3, 7]]]), torch.tensor([[[-0.5, -1.0]]]))
    twice = SparseTeacher(torch.tensor([[[3, 7, 3]]]), torch.tensor([[[-0.5, -1.0, NEVER]]]))
    values = [token_divergence(student, sparse, mask, TokenLoss("forward_kl", chunk_size=0)) for sparse in (once, twice)]
    assert float(values[1]) == pytest.approx(float(values[0]), rel=1e-6)
    grads = [torch.autograd.grad(value, student)[0] for value in values]
    assert torch.allclose(grads[1], grads[0], atol=1e-7)
