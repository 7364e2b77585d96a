"""Method losses: minimal at identity (or under the invariance the paper claims), gradient reaches the student
only, and a reference value computed independently (NumPy or the paper's identity)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from distillkit.losses import kd_loss
from distillkit.losses.logit_methods import dist_loss, dkd_loss, logit_standardized_kd
from distillkit.losses.relations import (
    attention_transfer,
    nst_loss,
    pkt_loss,
    rkd_angle_loss,
    rkd_distance_loss,
    similarity_preserving,
)

torch.manual_seed(0)
TARGETS = torch.tensor([0, 2, 1, 3])
LOGIT_LOSSES = {
    "dkd": lambda s, t: dkd_loss(s, t, TARGETS),
    "lskd": logit_standardized_kd,
    "dist": dist_loss,
}
FEATURE_LOSSES = {
    "at": attention_transfer, "sp": similarity_preserving, "pkt": pkt_loss, "rkd_d": rkd_distance_loss,
    "rkd_a": rkd_angle_loss, "nst": nst_loss,
}


@pytest.mark.parametrize("name", LOGIT_LOSSES)
def test_logit_methods_zero_at_identity_and_gradients(name):
    loss = LOGIT_LOSSES[name]
    z = torch.randn(4, 5)
    assert float(loss(z, z.clone())) == pytest.approx(0.0, abs=1e-5)
    s, t = torch.randn(4, 5, requires_grad=True), torch.randn(4, 5, requires_grad=True)
    loss(s, t).backward()
    assert s.grad.abs().sum() > 0 and t.grad is None


@pytest.mark.parametrize("name", FEATURE_LOSSES)
def test_feature_methods_zero_at_identity_and_gradients(name):
    loss = FEATURE_LOSSES[name]
    f = torch.randn(4, 6, 5, 5)
    assert float(loss(f, f.clone())) == pytest.approx(0.0, abs=1e-5)
    s = torch.randn(4, 3, 5, 5, requires_grad=True)  # a narrower student: no adapter needed
    t = torch.randn(4, 6, 5, 5, requires_grad=True)
    loss(s, t).backward()
    assert s.grad.abs().sum() > 0 and t.grad is None


def test_dkd_recovers_kd_by_the_papers_identity():
    # Zhao et al. 2022, eq. 5: KD = TCKD + (1 - p_t(target)) * NCKD. With one sample, beta = 1 - p_t(target).
    s, t, y = torch.randn(1, 6), torch.randn(1, 6), torch.tensor([2])
    temperature = 3.0
    p_target = float((t / temperature).softmax(-1)[0, 2])
    dkd = dkd_loss(s, t, y, alpha=1.0, beta=1.0 - p_target, temperature=temperature)
    assert float(dkd) == pytest.approx(float(kd_loss(s, t, temperature=temperature)), rel=1e-4)


def test_logit_standardization_ignores_logit_scale_and_shift():
    z = torch.randn(4, 7)
    assert float(logit_standardized_kd(3.0 * z + 5.0, z)) == pytest.approx(0.0, abs=1e-5)
    assert float(kd_loss(3.0 * z + 5.0, z, temperature=2.0)) > 0.1  # plain KD does not


def test_dist_reference_value():
    s, t = torch.randn(3, 4), torch.randn(3, 4)
    p_s, p_t = s.softmax(-1).numpy(), t.softmax(-1).numpy()
    inter = np.mean([1 - np.corrcoef(p_s[i], p_t[i])[0, 1] for i in range(3)])
    intra = np.mean([1 - np.corrcoef(p_s[:, j], p_t[:, j])[0, 1] for j in range(4)])
    assert float(dist_loss(s, t, beta=1.0, gamma=2.0)) == pytest.approx(inter + 2 * intra, rel=1e-4)


def test_attention_transfer_reference_and_channel_invariance():
    s, t = torch.randn(2, 3, 4, 4), torch.randn(2, 5, 4, 4)
    a_s = (s.numpy() ** 2).mean(1).reshape(2, -1)
    a_t = (t.numpy() ** 2).mean(1).reshape(2, -1)
    a_s /= np.linalg.norm(a_s, axis=1, keepdims=True)
    a_t /= np.linalg.norm(a_t, axis=1, keepdims=True)
    expected = ((a_s - a_t) ** 2).sum(1).mean()
    assert float(attention_transfer(s, t)) == pytest.approx(expected, rel=1e-5)
    assert float(attention_transfer(s, s.repeat(1, 2, 1, 1))) == pytest.approx(0.0, abs=1e-6)


def test_similarity_preserving_reference_and_scale_invariance():
    s, t = torch.randn(4, 6), torch.randn(4, 9)
    def gram(x):
        g = x @ x.T
        return g / np.linalg.norm(g, axis=1, keepdims=True)
    expected = ((gram(s.numpy()) - gram(t.numpy())) ** 2).sum() / 16
    assert float(similarity_preserving(s, t)) == pytest.approx(expected, rel=1e-5)
    assert float(similarity_preserving(3 * t, t)) == pytest.approx(0.0, abs=1e-6)


def test_pkt_reference_value():
    s, t = torch.randn(4, 6), torch.randn(4, 3)
    def conditional(x):
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        sim = (x @ x.T + 1) / 2
        return sim / sim.sum(1, keepdims=True)
    p_s, p_t = conditional(s.numpy()), conditional(t.numpy())
    expected = (p_t * np.log((p_t + 1e-7) / (p_s + 1e-7))).sum(1).mean()
    assert float(pkt_loss(s, t)) == pytest.approx(expected, rel=1e-4)


def test_rkd_invariances_and_reference():
    t = torch.randn(5, 8)
    rotation, _ = torch.linalg.qr(torch.randn(8, 8))
    assert float(rkd_distance_loss(2.5 * t, t)) == pytest.approx(0.0, abs=1e-6)  # scale-free
    assert float(rkd_angle_loss(2.5 * t @ rotation, t)) == pytest.approx(0.0, abs=1e-5)  # scale and rotation
    s = torch.randn(5, 3)
    def normalized(x):
        d = np.linalg.norm(x[:, None] - x[None], axis=2)[~np.eye(5, dtype=bool)]
        return d / d.mean()
    diff = np.abs(normalized(s.numpy()) - normalized(t.numpy()))
    expected = np.where(diff < 1, 0.5 * diff**2, diff - 0.5).mean()
    assert float(rkd_distance_loss(s, t)) == pytest.approx(expected, rel=1e-4)


def test_nst_reference_value():
    s, t = torch.randn(2, 3, 2, 2), torch.randn(2, 4, 2, 2)
    fs = F.normalize(s.flatten(2), dim=2).numpy()
    ft = F.normalize(t.flatten(2), dim=2).numpy()
    def k(a, b):
        return np.mean((a @ b.transpose(0, 2, 1)) ** 2, axis=(1, 2))
    expected = (k(ft, ft) + k(fs, fs) - 2 * k(fs, ft)).mean()
    assert float(nst_loss(s, t)) == pytest.approx(expected, rel=1e-4)


def test_temperature_checks():
    with pytest.raises(ValueError, match="temperature"):
        dkd_loss(torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0, 1]), temperature=0)
    with pytest.raises(ValueError, match="temperature"):
        dist_loss(torch.randn(2, 3), torch.randn(2, 3), temperature=-1)
