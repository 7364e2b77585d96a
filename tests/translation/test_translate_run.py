"""``distillkit translate`` end to end on tiny models: a teacher trained here, sequence-level and word-level
distillation, the comparison, report and saved students; a stop and a resume; bad configs."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from distillkit.cli.main import main
from distillkit.translation import Shortlist
from tests.translation.conftest import toy_pairs

EXECUTABLE = shutil.which("distillkit") or str(Path(sys.executable).parent / "distillkit")


@pytest.fixture(scope="module")
def translate_files(tmp_path_factory, toy_teacher, toy_tokenizer):
    """A teacher folder, a TSV of toy pairs and a config."""
    folder = tmp_path_factory.mktemp("translate")
    toy_teacher.save_pretrained(folder / "teacher")
    toy_tokenizer.save_pretrained(folder / "teacher")
    lines = ["id\ten\ttoy", *(f"{k}\t{en}\t{toy}" for k, (en, toy) in enumerate(toy_pairs(500, seed=21)))]
    (folder / "pairs.tsv").write_text("\n".join(lines) + "\n")
    config = {
        "name": "tiny-mt", "seed": 0,
        "teacher": {"model": "teacher"},
        "student": {"from_teacher": {"changes": {"decoder_layers": 1}}},
        "data": {"pairs": "pairs.tsv", "columns": ["en", "toy"], "val_sources": 20, "test_sources": 30,
                 "batch_size": 32},
        "distill": {"word_level": {"loss": "forward_kl"}, "alpha": 0.5},
        "train": {"epochs": 2, "lr": 0.002, "checkpoint_every": 4},
        "evaluate": {"beam": 2, "speed_sources": 6, "speed_batches": [1, 4], "samples": 3},
    }
    return folder, config


def _write(folder, config, name="mt.yaml"):
    path = folder / name
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_translate_run_trains_its_teacher_and_compares_three_models(translate_files, tmp_path, capsys):
    folder, config = translate_files
    here = {**config, "cache": str(tmp_path / "cache"),
            "teacher": {"train": {"config": {"d_model": 32, "encoder_layers": 2, "decoder_layers": 2,
                                             "encoder_attention_heads": 2, "decoder_attention_heads": 2,
                                             "encoder_ffn_dim": 64, "decoder_ffn_dim": 64,
                                             "max_position_embeddings": 64},
                                  "vocab_size": 200, "train": {"epochs": 2, "lr": 0.002}}},
            "distill": {"word_level": {"loss": "forward_kl"}, "alpha": 0.5, "label_smoothing": 0.1,
                        "sequence_level": {"targets": "interpolated", "beam": 2, "nbest": 2}},
            "evaluate": {**config["evaluate"], "shortlist": {"frequent": 4, "per_source": 3}}}
    out = tmp_path / "runs" / "mt"
    assert main(["translate", str(_write(folder, here)), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "distilled" in printed and "BLEU" in printed
    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {"teacher", "student_alone", "distilled", "distilled_int8",
                                      "distilled_shortlist"}
    assert results["teacher"].startswith("trained here: 2+2 layers")
    distilled = results["models"]["distilled"]
    for key in ("greedy/bleu", "greedy/chrf", "greedy/exact_match", "beam2/bleu", "greedy/sentences_per_s@1",
                "greedy/tokens_per_s@4", "beam2/sentences_per_s@4", "params", "size_mb", "train_seconds"):
        assert key in distilled, key
    assert distilled["params"] < results["models"]["teacher"]["params"]
    assert results["models"]["distilled_int8"]["size_mb"] < distilled["size_mb"]
    assert "interpolated" in results["objective"] and results["sequence_level"]["nbest"] == 2
    assert "label smoothing 0.1" in results["objective"]
    assert "version:" in results["signatures"]["bleu"] and len(results["samples"]["distilled"]) == 3
    assert any("against the teacher's beam2" in note for note in results["notes"])
    assert any("with the lexical shortlist" in note for note in results["notes"])
    shortlist = Shortlist.load(out / "distilled" / "model" / "shortlist.safetensors")  # saved beside the student
    assert shortlist.settings.per_source == 3 and shortlist.frequent.numel() == 4
    assert (out / "teacher" / "model" / "tokenizer.json").is_file()  # the teacher trained here, saved
    assert json.loads((out / "distilled" / "model" / "config.json").read_text())["decoder_layers"] == 1
    assert "Sample translations" in (out / "report.html").read_text()
    assert len(list((tmp_path / "cache" / "seqkd").iterdir())) == 1
    assert main(["report", str(out)]) == 0


def test_a_stopped_translate_run_resumes_to_the_uninterrupted_results(translate_files, tmp_path):
    folder, config = translate_files
    slow = {**config, "train": {"epochs": 2, "lr": 0.002, "checkpoint_every": 2},
            "evaluate": {**config["evaluate"], "speed_batches": [1]}}
    path = _write(folder, slow, "slow.yaml")
    straight = tmp_path / "straight"
    assert main(["translate", str(path), "--out", str(straight)]) == 0
    env = {**os.environ, "DISTILLKIT_NO_PROGRESS": "1"}
    out = tmp_path / "stopped"
    victim = subprocess.Popen([EXECUTABLE, "translate", str(path), "--out", str(out)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list((out / "distilled" / "checkpoints").glob("step-*")):
        time.sleep(0.05)
    victim.send_signal(signal.SIGTERM)
    _, err = victim.communicate(timeout=300)
    assert victim.returncode == 143, err
    assert not (out / "results.json").exists() and not (out / "distilled" / "model").exists()
    resumed = subprocess.run([EXECUTABLE, "translate", str(path), "--out", str(out), "--resume"], env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    again = json.loads((out / "results.json").read_text())["models"]
    before = json.loads((straight / "results.json").read_text())["models"]
    for model in ("student_alone", "distilled"):
        for key in ("greedy/bleu", "beam2/chrf"):
            assert again[model][key] == pytest.approx(before[model][key], abs=1e-9), (model, key)


@pytest.mark.parametrize("change, message", [
    ({"teacher": {"model": "teacher", "train": {}}}, "exactly one of teacher.model and teacher.train"),
    ({"data": {"pairs": "pairs.tsv", "columns": ["en", "de"]}}, "no column 'de'"),
    ({"data": {"pairs": "missing.tsv"}}, "parallel data not found"),
    ({"distill": {"sequence_level": {"beam": 2, "nbest": 3}}}, "cannot exceed beam"),
    ({"distill": {"word_level": {"loss": "kl"}}}, "distill.word_level.loss"),
    ({"distill": {"word_level": None}}, "word_level, sequence_level or both"),
    ({"distill": {"label_smoothing": 1.0}}, "distill.label_smoothing"),
    ({"student": {"from_teacher": {"changes": {"layers": 1}}}}, "no key 'layers'"),
])
def test_bad_translate_configs_fail_in_one_line_with_nothing_written(translate_files, tmp_path, capsys, change,
                                                                     message):
    folder, config = translate_files
    out = tmp_path / "runs" / "bad"
    assert main(["translate", str(_write(folder, {**config, **change}, "bad.yaml")), "--out", str(out)]) != 0
    assert message in capsys.readouterr().err.replace("\n", " ")
    if "layers" not in message:  # (a student the teacher cannot make is found once the teacher is loaded)
        assert not out.exists()


def test_the_shipped_translation_config_is_valid_and_the_kind_is_listed(capsys):
    from distillkit.config.loading import load_config
    from distillkit.config.translation import TranslationConfig

    files = sorted((Path(__file__).resolve().parents[2] / "configs" / "translation").glob("*.yaml"))
    assert [f.stem for f in files] == ["tatoeba-zh-en"]
    for path in files:
        assert load_config(path, model=TranslationConfig).name == path.stem
    assert main(["list", "kinds"]) == 0
    assert "distil a translation model" in capsys.readouterr().out
