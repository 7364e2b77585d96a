"""Interaction data split per user by time, the recommenders' interface, SASRec's causal masking, and training alone
and distilled on a small synthetic catalogue."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distillkit.recsys import (
    MatrixFactorization,
    NeuMF,
    RecDistillation,
    RecTraining,
    SASRec,
    evaluate_recommender,
    leave_one_out,
    read_interactions,
    teacher_ranking,
    temporal_split,
    train_recommender,
)
from distillkit.registry import DistillkitError


def _interactions_file(tmp_path, rows):
    path = tmp_path / "inter.tsv"
    path.write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                    + "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows))
    return path


def test_leave_one_out_holds_out_each_users_last_items_in_time_order(tmp_path):
    rows = [("a", "x", 5, 3), ("a", "y", 4, 1), ("a", "z", 5, 2), ("a", "w", 2, 4),  # w is rated too low
            ("b", "x", 5, 1), ("b", "y", 5, 2)]  # b has two interactions: it only trains
    data = read_interactions(_interactions_file(tmp_path, rows), min_rating=4)
    assert data.num_users == 2 and data.num_items == 3  # w was dropped
    splits = leave_one_out(data)
    item = {name: k for k, name in enumerate(data.item_ids)}
    assert splits.test[0] == [item["x"]] and splits.val[0] == [item["z"]]  # times 3 and 2; y (time 1) trains
    assert splits.histories()[0] == [item["y"]] and splits.test[1] == []
    assert splits.counts["users_too_short_to_test"] == 1 and splits.counts["train"] == 3


def test_temporal_split_and_bad_files(tmp_path):
    rows = [("a", f"i{k}", 5, k) for k in range(10)]
    splits = temporal_split(read_interactions(_interactions_file(tmp_path, rows)), test_fraction=0.2,
                            val_fraction=0.1)
    names = splits.train.item_ids
    assert [names[i] for i in splits.test[0]] == ["i8", "i9"] and [names[i] for i in splits.val[0]] == ["i7"]
    bad = tmp_path / "bad.tsv"
    bad.write_text("user\titem\n1\t2\n")
    with pytest.raises(DistillkitError, match="no column 'user_id'"):
        read_interactions(bad)
    with pytest.raises(DistillkitError, match="does not exist"):
        read_interactions(tmp_path / "none.tsv")


def test_sasrec_is_causal_and_ignores_padding():
    torch.manual_seed(0)
    model = SASRec(20, 16, layers=2, heads=2, max_length=6, dropout=0.0).eval()
    history = torch.tensor([[20, 20, 3, 5, 7, 9]])
    changed = history.clone()
    changed[0, -1] = 11  # only the last item changes
    before, after = model.encode(history), model.encode(changed)
    torch.testing.assert_close(before[:, :-1], after[:, :-1])  # earlier positions never see later items
    assert not torch.allclose(before[:, -1], after[:, -1])
    # negative control: changing an earlier item changes the later positions
    earlier = history.clone()
    earlier[0, 2] = 4
    assert not torch.allclose(model.encode(earlier)[:, -1], before[:, -1])
    # padding is not attended to: without position embeddings, the same items with or without padding in front
    # give the same last vector
    position_free = SASRec(20, 16, layers=1, heads=2, max_length=6, dropout=0.0).eval()
    position_free.positions.weight.data.zero_()
    torch.testing.assert_close(position_free.encode(torch.tensor([[20, 5, 7]]))[:, -1],
                               position_free.encode(torch.tensor([[5, 7]]))[:, -1])


@pytest.mark.parametrize("model", [MatrixFactorization(5, 7, 4), NeuMF(5, 7, 4, hidden=8), SASRec(7, 4, heads=1)])
def test_every_recommender_scores_items_and_the_catalogue_alike(model):
    model.eval()
    users = torch.tensor([0, 3])
    histories = torch.tensor([[7, 1, 2], [3, 4, 5]])
    full = model.score_all(users, histories)
    assert full.shape == (2, 7)
    picked = model.score(users, torch.tensor([[2, 6], [0, 1]]), histories)
    torch.testing.assert_close(picked, full.gather(1, torch.tensor([[2, 6], [0, 1]])))


def _clustered_catalogue(tmp_path):
    """60 users in 3 taste groups, each group interacting mostly with its own 10 of 30 items."""
    generator = np.random.default_rng(0)
    rows = []
    for user in range(60):
        group = user % 3
        items = generator.choice(np.arange(group * 10, group * 10 + 10), size=8, replace=False)
        rows += [(f"u{user}", f"i{item:02d}", 5, t) for t, item in enumerate(items)]
    return leave_one_out(read_interactions(_interactions_file(tmp_path, rows)))


def test_a_teacher_learns_and_distilled_students_follow_its_ranking(tmp_path):
    splits = _clustered_catalogue(tmp_path)
    teacher = MatrixFactorization(60, 30, 16)
    train_recommender(teacher, splits, RecTraining(epochs=40, lr=0.02, batch_size=16, positives=4))
    metrics = evaluate_recommender(teacher, splits, ks=(10,), speed=False)
    assert metrics["hr@10"] > 0.7  # a group's 10 items, minus the seen ones, fill the top 10
    ranking = teacher_ranking(teacher, splits, 10)
    for method in ("rd", "rrd", "score", "embedding"):
        student = MatrixFactorization(60, 30, 4)
        train_recommender(student, splits, RecTraining(epochs=30, lr=0.02, batch_size=16, positives=4),
                          teacher=teacher, distillation=RecDistillation(method=method, top_k=5, pool=10,
                                                                        uninteresting=10), ranking=ranking)
        assert evaluate_recommender(student, splits, ks=(10,), speed=False)["hr@10"] > 0.5, method
