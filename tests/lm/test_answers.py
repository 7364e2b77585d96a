"""Answers scored as question-answering benchmarks score them (SQuAD's normalization, exact match, token F1, the
best of the accepted answers), the trivia lists read with all their accepted answers, and an lm run on pairs that
reports them."""

import json

import pytest

from distillkit.lm import data as lm_data
from distillkit.lm.answers import answer_scores, normalize_answer, token_f1
from distillkit.lm.data import Pair, read_pairs


def test_answers_are_normalized_as_squad_normalizes_them():
    assert normalize_answer("The  Eiffel-Tower, in Paris!") == "eiffeltower in paris"
    assert normalize_answer("an Apple a day") == "apple day"


def test_token_f1_and_exact_match_against_hand_computations():
    assert token_f1("the red ball", "a red ball") == 1.0  # articles do not count
    assert token_f1("red ball in the park", "red ball") == pytest.approx(2 * (2 / 4) * 1 / (2 / 4 + 1))  # 0.667
    assert token_f1("blue sky", "red ball") == 0.0  # the negative control: nothing shared
    scores = answer_scores(["Ten", "paris france", "nothing"], [["10", "Ten"], ["Paris"], ["Rome"]])
    assert scores["exact_match"] == pytest.approx(1 / 3)  # only "Ten" (the second of its answers)
    assert scores["f1"] == pytest.approx((1.0 + 2 * 0.5 * 1 / 1.5 + 0.0) / 3)  # the best answer of each
    with pytest.raises(ValueError, match="at least one accepted answer"):
        answer_scores(["x"], [[]])


def test_trivia_lists_keep_every_accepted_answer(tmp_path, monkeypatch):
    lists = tmp_path / "redbot" / "cogs" / "trivia" / "data" / "lists"
    lists.mkdir(parents=True)
    (lists / "games.yaml").write_text('AUTHOR: someone\n"What number is COD Ghosts?":\n- Ten\n- 10\n'
                                      "Which game has a royal flush?:\n- Poker\n")
    monkeypatch.setattr(lm_data, "_package_folder", lambda package, extra="lm": tmp_path / package)
    pairs = read_pairs("trivia:games")
    assert pairs == [Pair("What number is COD Ghosts?", "Ten", ("Ten", "10")),
                     Pair("Which game has a royal flush?", "Poker", ("Poker",))]  # AUTHOR is not a question
    assert pairs[0].answers == ("Ten", "10") and Pair("q", "a").answers == ("a",)
    with pytest.raises(Exception, match="no trivia list 'gamez'; the lists are: games"):
        read_pairs("trivia:gamez")


def test_a_jsonl_response_may_list_its_accepted_answers(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"prompt": "capital of France?", "response": ["Paris", "paris, France"]}) + "\n"
                    + json.dumps({"prompt": "2 + 2?", "response": "4"}) + "\n")
    assert read_pairs(str(path)) == [Pair("capital of France?", "Paris", ("Paris", "paris, France")),
                                     Pair("2 + 2?", "4")]
