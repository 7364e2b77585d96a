"""Paired data: views pair up one to one, lexicons align names across locales, splits never share a concept."""

import pytest
import torch

from distillkit.paired import PairedDataset, PairsError, cldr_lexicon, iso_lexicon, translation_pairs
from distillkit.text import ByteTokenizer


def test_paired_dataset_yields_both_views_labels_and_extra_fields():
    pairs = PairedDataset({"source": ["a", "b"], "translation": ["x", "y"]}, targets=[0, 1], extra={"language": ["fr", "de"]})
    assert pairs[1] == {"source": "b", "translation": "y", "language": "de", "target": torch.tensor(1), "index": 1}
    assert pairs.deterministic
    noisy = PairedDataset({"a": [1.0, 2.0], "b": [3.0, 4.0]}, transforms={"b": lambda v: v + 100})
    assert noisy[0]["b"] == 103.0 and not noisy.deterministic  # the teacher cache stays off for it


@pytest.mark.parametrize("views, kwargs, message", [
    ({"a": [1, 2, 3], "b": [1, 2]}, {}, "lengths differ"),
    ({"a": [1, 2]}, {}, "at least two views"),
    ({"a": [1, 2], "b": [1, 2]}, {"targets": [0]}, "lengths differ"),
    ({"a": [1], "b": [2]}, {"transforms": {"c": abs}}, "not views"),
])
def test_paired_dataset_refuses_views_that_do_not_pair_up(views, kwargs, message):
    with pytest.raises(PairsError, match=message):
        PairedDataset(views, **kwargs)


def test_cldr_lexicon_aligns_the_same_concept_across_locales():
    lexicon = cldr_lexicon(["en", "fr", "zh", "ru"], kinds=["territories", "currencies"])
    us = lexicon.concepts.index(("territories", "US"))
    assert [lexicon.names[code][us] for code in ("en", "fr", "zh", "ru")] == [
        "United States", "États-Unis", "美国", "Соединенные Штаты"]
    assert all(name.strip() for names in lexicon.names.values() for name in names)
    assert len(set(lexicon.names["en"])) == len(lexicon)  # English names are unique: retrieval is well posed


def test_concept_splits_never_share_a_concept_and_are_deterministic():
    lexicon = cldr_lexicon(["en", "de"])
    train, val, test = lexicon.split(test_fraction=0.2, val_fraction=0.1, seed=3)
    assert not (set(train) & set(test)) and not (set(train) & set(val)) and not (set(val) & set(test))
    assert sorted(train + val + test) == list(range(len(lexicon)))
    assert lexicon.split(test_fraction=0.2, val_fraction=0.1, seed=3) == (train, val, test)
    pairs = translation_pairs(lexicon, test, ["de"])
    assert set(pairs.extra["concept"]) == set(test)  # the test pairs hold test concepts only
    assert len(pairs) == 2 * len(test)  # English with itself, and with German


def test_unknown_locales_are_refused_by_name():
    with pytest.raises(PairsError, match="no locale 'xx_YY'"):
        cldr_lexicon(["en", "xx_YY"])
    with pytest.raises(PairsError, match="no names in \\['ja'\\]"):
        translation_pairs(cldr_lexicon(["en", "fr"], kinds=["scripts"]), [0], ["ja"])


def test_iso_lexicon_translates_country_names():
    lexicon = iso_lexicon(["en", "de"])
    germany = lexicon.concepts.index(("territories", "DE"))
    assert (lexicon.names["en"][germany], lexicon.names["de"][germany]) == ("Germany", "Deutschland")


def test_byte_tokenizer_covers_every_script():
    tokens = ByteTokenizer()(["Germany", "德国", ""], max_length=8)
    assert tokens["input_ids"].shape == (3, 7)
    assert tokens["attention_mask"].sum(1).tolist() == [7, 6, 0]  # 2 CJK characters are 6 bytes
    assert int(tokens["input_ids"].max()) <= 256 and int(tokens["input_ids"][0, 0]) == ord("G") + 1


def test_user_pairs_from_a_table_and_their_errors(tmp_path):
    from distillkit.paired import load_pairs

    table = tmp_path / "pairs.tsv"
    table.write_text("english\tgerman\ttopic\nGermany\tDeutschland\tplace\nEuro\tEuro\tmoney\n")
    pairs = load_pairs(table, first="english", second="german", label="topic")
    assert pairs[0] == {"english": "Germany", "german": "Deutschland", "target": torch.tensor(1), "index": 0}
    with pytest.raises(PairsError, match="no column 'french'; columns are"):
        load_pairs(table, first="english", second="french")
    (tmp_path / "gap.csv").write_text("a,b\nx,y\nz,\n")
    with pytest.raises(PairsError, match="column 'b' is empty at rows \\[2\\]"):
        load_pairs(tmp_path / "gap.csv", first="a", second="b")
