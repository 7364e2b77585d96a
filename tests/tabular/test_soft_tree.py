"""The soft decision tree (Frosst & Hinton 2017): routing, its balance penalty against a hand computation, the
penalty in the distiller's loss, and the CART tree fitted to soft labels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from distillkit import Distiller
from distillkit.models.rules import RuleTreeOptions, describe_soft_tree, fit_rule_tree
from distillkit.models.soft_tree import SoftDecisionTree, routing_penalty


def test_routing_probabilities_sum_to_one_at_every_level_and_follow_the_filters():
    torch.manual_seed(0)
    tree = SoftDecisionTree(5, 3, depth=3)
    x = torch.randn(7, 5)
    right, path, leaves = tree.routing(x)
    assert leaves.shape == (7, 8) and path.shape == (7, 7)
    torch.testing.assert_close(leaves.sum(1), torch.ones(7))
    for level in range(3):  # the nodes of each level share the whole probability
        torch.testing.assert_close(path[:, 2 ** level - 1:2 ** (level + 1) - 1].sum(1), torch.ones(7))
    # leaf 5 (binary 101: right, left, right) by hand: node 0 right, node 2 left, node 5 right
    p = torch.sigmoid(tree.filters(x))
    torch.testing.assert_close(leaves[:, 5], p[:, 0] * (1 - p[:, 2]) * p[:, 5])
    torch.testing.assert_close(tree(x).exp().sum(1), torch.ones(7))


def test_the_penalty_matches_a_hand_computation_of_eqs_3_and_4():
    path = torch.tensor([[1.0, 0.3, 0.7], [1.0, 0.9, 0.1]])
    right = torch.tensor([[0.3, 0.5, 0.2], [0.9, 0.6, 0.4]])
    depth = torch.tensor([0, 1, 1])
    alphas = [(0.3 + 0.9) / 2, (0.3 * 0.5 + 0.9 * 0.6) / 1.2, (0.7 * 0.2 + 0.1 * 0.4) / 0.8]
    expected = -0.5 * sum(2.0 ** -d * 0.5 * (math.log(a) + math.log(1 - a)) for a, d in zip(alphas, [0, 1, 1]))
    assert routing_penalty(path, right, depth, strength=0.5).item() == pytest.approx(expected, rel=1e-6)
    # negative control: balanced splits cost the least, lopsided ones more
    balanced = routing_penalty(torch.ones(4, 1), torch.full((4, 1), 0.5), torch.tensor([0]), strength=1.0)
    lopsided = routing_penalty(torch.ones(4, 1), torch.full((4, 1), 0.95), torch.tensor([0]), strength=1.0)
    assert balanced.item() == pytest.approx(math.log(2)) and lopsided > balanced


def test_the_distiller_adds_the_trees_penalty_in_training_only():
    torch.manual_seed(0)
    tree = SoftDecisionTree(4, 2, depth=2, penalty_strength=0.3)
    distiller = Distiller(None, tree)
    batch = {"input": torch.randn(16, 4), "target": torch.randint(0, 2, (16,))}
    distiller.train()
    out = distiller(batch)
    assert "student_penalty" in out.raw and out.raw["student_penalty"] > 0
    hard = torch.nn.functional.cross_entropy(out.student_logits, batch["target"])
    torch.testing.assert_close(out.loss, hard + out.raw["student_penalty"], rtol=1e-5, atol=1e-6)
    distiller.eval()
    assert "student_penalty" not in distiller(batch).raw
    # negative control: without the penalty the loss is the cross-entropy alone
    tree.penalty_strength = 0.0
    distiller.train()
    assert "student_penalty" not in distiller(batch).raw


def test_a_soft_tree_learns_a_split_and_says_which_feature_it_uses():
    torch.manual_seed(0)
    x = torch.randn(512, 3)
    y = (x[:, 1] > 0).long()
    tree = SoftDecisionTree(3, 2, depth=1, beta=4.0, penalty_strength=0.0)
    optimizer = torch.optim.Adam(tree.parameters(), lr=0.05)
    for _ in range(150):
        optimizer.zero_grad()
        torch.nn.functional.nll_loss(tree(x), y).backward()
        optimizer.step()
    assert (tree(x).argmax(1) == y).float().mean() > 0.95
    assert (tree.max_path_logits(x).argmax(1) == y).float().mean() > 0.95
    lines = describe_soft_tree(tree, ["a", "b", "c"], top=1)
    assert lines[0].startswith("node 0: right if") and " b " in lines[0] + " "


def test_cart_on_soft_labels_reads_rules_in_the_tables_units():
    generator = np.random.default_rng(0)
    age = generator.uniform(20, 70, 400)
    standardized = ((age - 45) / 10)[:, None]
    soft = np.stack([1 / (1 + np.exp(standardized[:, 0] * 3)), 1 / (1 + np.exp(-standardized[:, 0] * 3))], 1)
    rules = fit_rule_tree(standardized, soft, RuleTreeOptions(max_depth=1))
    assert rules.depth == 1 and rules.leaves == 2
    assert (rules.predict(standardized) == soft.argmax(1)).mean() > 0.97
    text = rules.text(["age"], ["young", "old"], {"age": (45.0, 10.0)})
    threshold = float(text.splitlines()[0].split("<=")[1])
    assert 42 < threshold < 48, text  # in years, not in deviations
    assert "class: young" in text and "class: old" in text
    labels = fit_rule_tree(standardized, soft.argmax(1), RuleTreeOptions(max_depth=1))
    assert not labels.soft_labels and labels.leaves == 2
