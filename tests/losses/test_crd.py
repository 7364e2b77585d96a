import numpy as np
import pytest
import torch

from distillkit.losses.crd import CRDLoss


def make(num_samples=20, negatives=5):
    torch.manual_seed(0)
    return CRDLoss(6, 9, num_samples, feat_dim=4, num_negatives=negatives, temperature=0.1, momentum=0.5)


def test_reference_value_by_hand():
    crd = make().eval()  # eval: no memory update, so the by-hand computation sees the same banks
    s, t, index = torch.randn(3, 6), torch.randn(3, 9), torch.tensor([1, 7, 4])
    loss = crd(s, t, index, generator=torch.Generator().manual_seed(5))
    negatives = torch.randint(0, 20, (3, 5), generator=torch.Generator().manual_seed(5)).numpy()
    v_s, v_t = (v.detach().numpy() for v in crd.embed(s, t))
    mem_s, mem_t = crd.memory_student.numpy(), crd.memory_teacher.numpy()

    def ce(anchor, other, memory):
        logits = np.concatenate([(anchor * other).sum(1, keepdims=True),
                                 np.einsum("bkd,bd->bk", memory[negatives], anchor)], 1) / 0.1
        logits -= logits.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(logits).sum(1)) - logits[:, 0]))

    expected = ce(v_s, v_t, mem_t) + ce(v_t, v_s, mem_s)
    assert float(loss) == pytest.approx(expected, rel=1e-4)


def test_gradients_reach_student_and_heads_not_teacher():
    crd = make()
    s = torch.randn(4, 6, requires_grad=True)
    t = torch.randn(4, 9, requires_grad=True)
    crd(s, t, torch.arange(4)).backward()
    assert s.grad.abs().sum() > 0 and t.grad is None
    assert crd.embed_student.weight.grad is not None and crd.embed_teacher.weight.grad is not None


def test_memory_updates_only_the_batch_rows_and_only_in_training():
    crd = make()
    before = crd.memory_student.clone()
    crd.eval()
    crd(torch.randn(2, 6), torch.randn(2, 9), torch.tensor([3, 8]))
    assert torch.equal(crd.memory_student, before)
    crd.train()
    crd(torch.randn(2, 6), torch.randn(2, 9), torch.tensor([3, 8]))
    changed = (crd.memory_student != before).any(1).nonzero().flatten().tolist()
    assert changed == [3, 8]
    assert torch.allclose(crd.memory_student.norm(dim=1), torch.ones(20), atol=1e-5)


def test_training_lowers_the_loss_on_related_features():
    torch.manual_seed(1)
    teacher_features = torch.randn(20, 9)
    mix = torch.randn(9, 6)
    student_features = teacher_features @ mix  # the student feature carries the teacher's information
    crd = make(negatives=10)
    optimizer = torch.optim.Adam(crd.parameters(), lr=0.05)
    index = torch.arange(20)
    first = float(crd(student_features, teacher_features, index))
    for _ in range(60):
        loss = crd(student_features, teacher_features, index)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss) < 0.5 * first


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least 2"):
        CRDLoss(3, 3, 1)
    with pytest.raises(ValueError, match="momentum"):
        CRDLoss(3, 3, 10, momentum=1.0)
