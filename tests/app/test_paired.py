"""`distillkit paired` end to end: a small cross-lingual run (CLDR names, MiniLM teacher, byte-level student), a
cross-modal run from two folders (texts and WAV audio), the speech source, bad input refused with nothing written,
and a resumed run that reuses what was trained."""

import json
import math

import pytest
import torch
import yaml
from tests.paired.test_files import write_tone

from distillkit.app import paired as paired_app
from distillkit.cli.main import main
from distillkit.config import load_config
from distillkit.tracking import RunRecords

pytest.importorskip("babel")

CROSSLINGUAL = {
    "name": "tiny-crosslingual",
    "seed": 0,
    "data": {"batch_size": 32, "pairs": {"kind": "translation", "languages": ["fr", "ru"], "concepts": 40}},
    "teacher": {"model": "sentence-encoder"},
    "student": {"model": "byte-cnn", "kwargs": {"channels": 32, "layers": 1}},
    "train": {"epochs": 2, "lr": 0.003, "optimizer": "adamw"},
}


def _write(tmp_path, raw, name="pairs.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def crosslingual_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("paired")
    out = root / "runs" / "crosslingual"
    assert main(["paired", str(_write(root, CROSSLINGUAL)), "--out", str(out)]) == 0
    return out


def test_a_crosslingual_run_compares_teacher_student_alone_and_distilled_by_retrieval(crosslingual_run):
    results = json.loads((crosslingual_run / "results.json").read_text())
    assert results["kind"] == "paired" and results["objective"] == "embedding"
    assert results["columns"] == ["fr/to_en", "ru/to_en", "to_en", "from_en"]
    assert list(results["models"]) == ["teacher", "student_alone", "distilled"]
    for metrics in results["models"].values():
        assert 0.0 <= metrics["to_en"] <= 1.0 and set(results["columns"]) <= set(metrics)
    assert 0.0 <= results["models"]["distilled"]["en_to_teacher_en"] <= 1.0
    assert results["cost"]["teacher"]["params"] > 50 * results["cost"]["student"]["params"]
    for name in ("student_alone", "distilled"):
        assert (crosslingual_run / name / "model.safetensors").is_file()
    assert "fr/to_en" in (crosslingual_run / "results.md").read_text()
    assert (crosslingual_run / "report.html").is_file()
    record = RunRecords(crosslingual_run.parent / "runs.db").list()[0]
    assert record["kind"] == "paired" and record["status"] == "finished"


def test_a_paired_runs_byte_level_student_is_exported_as_a_pretrained_folder(crosslingual_run, tmp_path):
    from distillkit.models import load_pretrained

    assert json.loads((crosslingual_run / "results.json").read_text())["shared"]["format"] == "distillkit"
    out = tmp_path / "student"
    assert main(["export", str(crosslingual_run), "--out", str(out)]) == 0  # refused ("rerun it") before
    card = (out / "README.md").read_text()
    assert "distillkit paired" in card and "fr/to_en" in card  # the paired table, not a comparison's
    student = load_pretrained(out).eval()
    reference = load_pretrained(crosslingual_run / "distilled").eval()
    assert torch.equal(student(["Allemagne", "Германия"]), reference(["Allemagne", "Германия"]))


def test_a_run_stopped_while_distilling_resumes_to_the_same_results(crosslingual_run, tmp_path, monkeypatch):
    config = _write(tmp_path, CROSSLINGUAL)
    original = paired_app.train_one

    def stop_at_distilled(name, *args, **kwargs):
        if name == "distilled":
            raise KeyboardInterrupt  # the process is stopped once the student alone is saved
        return original(name, *args, **kwargs)

    monkeypatch.setattr(paired_app, "train_one", stop_at_distilled)
    resumed = tmp_path / "runs" / "resumed"
    assert main(["paired", str(config), "--out", str(resumed)]) == 130
    alone_weights = (resumed / "student_alone" / "model.safetensors").read_bytes()
    assert not (resumed / "results.json").exists()
    monkeypatch.setattr(paired_app, "train_one", original)
    assert main(["paired", str(config), "--out", str(resumed), "--resume"]) == 0
    assert (resumed / "student_alone" / "model.safetensors").read_bytes() == alone_weights  # reused, not retrained
    first = json.loads((crosslingual_run / "results.json").read_text())["models"]
    second = json.loads((resumed / "results.json").read_text())["models"]
    for name in ("teacher", "student_alone", "distilled"):
        assert second[name]["to_en"] == first[name]["to_en"]
    assert (resumed / "distilled" / "model.safetensors").read_bytes() == \
        (crosslingual_run / "distilled" / "model.safetensors").read_bytes()


def test_a_student_with_a_vocabulary_gets_the_characters_of_its_training_names(tmp_path):
    """A student initialised from the teacher (one of its layers) reads Chinese names: the characters its English
    vocabulary reads as [UNK] become tokens of its own, and the weights saved are those of the larger vocabulary."""
    from safetensors.torch import load_file

    raw = {**CROSSLINGUAL, "data": {"batch_size": 32, "pairs": {"kind": "translation", "languages": ["zh"],
                                                                "concepts": 30}},
           "student": {"model": "sentence-encoder", "kwargs": {"layers": [0]}},
           "train": {"epochs": 1, "lr": 0.0001, "optimizer": "adamw"}}
    out = tmp_path / "runs" / "zh"
    assert main(["paired", str(_write(tmp_path, raw)), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {"teacher", "student_alone", "distilled"}
    rows = {name: load_file(str(out / name / "model.safetensors"))["model.encoder.embeddings.word_embeddings.weight"]
            .shape[0] for name in ("student_alone", "distilled")}
    teacher_rows = 30522  # all-MiniLM-L6-v2's vocabulary
    assert rows["student_alone"] == rows["distilled"] > teacher_rows
    assert results["cost"]["student"]["params"] < results["cost"]["teacher"]["params"]


def _folders(root, seconds=0.4):
    """Texts and their 'speech': a tone whose pitch depends on the text's class (low or high)."""
    (root / "text").mkdir()
    (root / "audio").mkdir()
    rows = ["name,label"]
    for k in range(16):
        label = "low" if k % 2 else "high"
        (root / "text" / f"{k:02d}.txt").write_text(f"a {label} sound number {k}")
        write_tone(root / "audio" / f"{k:02d}.wav", (300 if label == "low" else 1200) + 20 * k, seconds=seconds)
        rows.append(f"{k:02d},{label}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")


CROSSMODAL = {
    "name": "tiny-crossmodal",
    "seed": 0,
    "data": {"batch_size": 8, "pairs": {"kind": "folders", "first": "text", "second": "audio", "label": "labels.csv",
                                        "max_seconds": 1.0, "test_fraction": 0.25}},
    "teacher": {"model": "text-transformer", "kwargs": {"layers": [0]},
                "train": {"epochs": 1, "lr": 0.0001, "optimizer": "adamw"}},
    "student": {"model": "audio_cnn", "kwargs": {"channels": 16, "hidden": 8}},
    "distill": {"alpha": 0.7, "temperature": 2.0},
    "train": {"epochs": 2, "lr": 0.003, "optimizer": "adamw"},
}


def test_a_crossmodal_run_from_two_folders_of_text_and_audio(tmp_path):
    _folders(tmp_path)
    out = tmp_path / "runs" / "crossmodal"
    assert main(["paired", str(_write(tmp_path, CROSSMODAL)), "--out", str(out)]) == 0  # relative folders
    results = json.loads((out / "results.json").read_text())
    assert results["objective"] == "labels" and (results["teacher_view"], results["student_view"]) == ("text", "audio")
    assert results["train_pairs"] == 12 and results["test_pairs"] == 4
    assert list(results["models"]) == ["teacher", "student_alone", "distilled"]
    for metrics in results["models"].values():
        assert metrics["test/accuracy"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    for name in ("teacher", "student_alone", "distilled"):
        assert (out / name / "model.safetensors").is_file()


class ToneSynthesizer:
    """Stands in for eSpeak NG: a tone per text and voice (the suite synthesizes only a few seconds of speech)."""

    sample_rate = 8000

    def __init__(self, *, max_seconds=4.0, seed=0, workers=2):
        self.max_seconds, self.seed = max_seconds, seed

    def speak_many(self, items):
        waves = []
        for text, voice in items:
            hertz = 200 + 40 * (sum(map(ord, text)) % 20) + voice.pitch
            t = torch.arange(int(0.3 * self.sample_rate)) / self.sample_rate
            waves.append(0.3 * torch.sin(2 * math.pi * hertz * t))
        return waves


def test_the_speech_source_speaks_held_out_names_in_held_out_voices(tmp_path, monkeypatch):
    monkeypatch.setattr(paired_app, "Synthesizer", ToneSynthesizer)
    raw = {**CROSSMODAL, "name": "tiny-speech",
           "data": {"batch_size": 16, "pairs": {"kind": "speech", "concepts": 24, "kinds": ["territories", "currencies"],
                                                "voices": ["en+m1@170@45"], "test_voices": ["en+f5@180@65"],
                                                "speech_cache": str(tmp_path / "speech")}}}
    task = paired_app.build_pairs(load_config(raw=raw))
    assert task.objective == "labels" and task.num_classes == 2
    train_concepts = set(task.train.extra["concept"])
    assert not train_concepts & set(task.test.extra["concept"])  # no name in both splits
    assert set(task.train.extra["voice"]) == {"en+m1@170@45"} and set(task.test.extra["voice"]) == {"en+f5@180@65"}
    assert len(list((tmp_path / "speech").rglob("*.npy"))) == len(task.train) + len(task.test)  # cached on disk
    out = tmp_path / "runs" / "speech"
    assert main(["paired", str(_write(tmp_path, raw)), "--out", str(out)]) == 0
    assert json.loads((out / "results.json").read_text())["data"].startswith("spoken CLDR names")


@pytest.mark.parametrize("change, message", [
    ({"languages": ["fr", "xx"]}, "no locale 'xx'"),
    ({"kind": "table"}, "data.pairs.table.path: Field required"),
    ({"kind": "table", "path": "p.csv", "first": "a", "second": "b"}, "data.pairs.table.languages: unknown key"),
    ({"kinds": ["planets"]}, "kinds: unknown"),
    ({"languages": ["en", "fr"]}, "English is the teacher's language"),
])
def test_bad_pairs_are_refused_with_nothing_written(tmp_path, capsys, change, message):
    raw = json.loads(json.dumps(CROSSLINGUAL))
    raw["data"]["pairs"].update(change)
    out = tmp_path / "runs" / "bad"
    assert main(["paired", str(_write(tmp_path, raw)), "--out", str(out)]) != 0
    assert message in capsys.readouterr().err.replace("\n", " ")
    assert not out.exists()


def test_audio_longer_than_the_maximum_is_refused_with_nothing_written(tmp_path, capsys):
    _folders(tmp_path, seconds=1.5)
    out = tmp_path / "runs" / "long"
    assert main(["paired", str(_write(tmp_path, CROSSMODAL)), "--out", str(out)]) != 0
    assert "longer than the maximum of 1.0 s" in capsys.readouterr().err.replace("\n", " ")
    assert not out.exists()


def test_a_config_without_pairs_is_refused_by_paired(tmp_path, capsys):
    raw = {key: value for key, value in CROSSLINGUAL.items() if key != "data"}
    assert main(["paired", str(_write(tmp_path, raw)), "--out", str(tmp_path / "runs" / "x")]) != 0
    assert "has no data.pairs section" in capsys.readouterr().err.replace("\n", " ")


def test_a_headerless_parallel_tsv_trains_on_both_views_and_shares_a_sentence_transformers_student(tmp_path,
                                                                                                  capsys):
    """sentence-transformers' parallel-sentence files have no header (0: English, 1: the translation); their
    multilingual recipe trains the student on both; the student leaves as their folder, which export copies."""
    sentence_transformers = pytest.importorskip("sentence_transformers")
    import gzip

    words = ["red", "green", "blue", "black", "white", "small", "large", "old", "new", "fast"]
    french = ["rouge", "vert", "bleu", "noir", "blanc", "petit", "grand", "vieux", "neuf", "rapide"]
    lines = [f'the "{w}" house number {k}\tla maison "{f}" numéro {k}' for k in range(3)
             for w, f in zip(words, french)]
    with gzip.open(tmp_path / "en-fr.tsv.gz", "wt", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")  # quotes kept as text, as in their files
    raw = {"name": "parallel", "seed": 0,
           "data": {"batch_size": 8, "pairs": {"kind": "table", "path": "en-fr.tsv.gz", "first": 0, "second": 1,
                                               "both_views": True, "test_fraction": 0.2}},
           "teacher": {"model": "sentence-encoder"}, "student": {"model": "sentence-encoder", "kwargs": {"layers": [0]}},
           "train": {"epochs": 1, "lr": 0.0001, "optimizer": "adamw"}}
    out = tmp_path / "runs" / "parallel"
    assert main(["paired", str(_write(tmp_path, raw)), "--out", str(out)]) == 0
    assert "and 'column_0' (both views)" in (out / "log.txt").read_text()
    results = json.loads((out / "results.json").read_text())
    assert results["teacher_view"] == "column_0" and results["train_pairs"] == 24
    assert results["shared"] == {"format": "sentence-transformers", "folder": "distilled/sentence-transformers"}
    exported = tmp_path / "exports" / "student"
    assert main(["export", str(out), "--out", str(exported)]) == 0
    assert "SentenceTransformer(" in capsys.readouterr().out
    student = sentence_transformers.SentenceTransformer(str(exported), device="cpu")
    assert student.encode(["la maison rouge"]).shape == (1, 384)
    assert len(student[0].auto_model.encoder.layer) == 1  # the distilled one-layer student, not the teacher


@pytest.mark.parametrize("change, message", [
    ({"first": "english", "second": 1}, "number every column from 0"),
    ({"first": 0, "second": 5}, "no column 5; it has 2 columns"),
    ({"first": 0, "second": 1, "label": 0, "both_views": True}, "both_views needs pairs of two texts"),
])
def test_bad_table_columns_are_refused_with_nothing_written(tmp_path, capsys, change, message):
    (tmp_path / "pairs.tsv").write_text("".join(f"house {k}\tmaison {k}\n" for k in range(20)))
    raw = {"name": "bad", "seed": 0, "data": {"pairs": {"kind": "table", "path": "pairs.tsv", **change}},
           "teacher": {"model": "sentence-encoder"}, "student": {"model": "byte-cnn"}}
    out = tmp_path / "runs" / "bad"
    assert main(["paired", str(_write(tmp_path, raw)), "--out", str(out)]) != 0
    assert message in capsys.readouterr().err.replace("\n", " ")
    assert not out.exists()
