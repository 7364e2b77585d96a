"""``distillkit lm`` end to end on tiny models: the comparison, the saved student loaded by transformers alone,
the offline file, the report, a stop and a resume, and bad configs."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from distillkit.cli.main import main
from tests.lm.conftest import documents

EXECUTABLE = shutil.which("distillkit") or str(Path(sys.executable).parent / "distillkit")


@pytest.fixture(scope="module")
def lm_files(tmp_path_factory, teacher, tokenizer):
    """A teacher folder (save_pretrained with its tokenizer), a text file and a config."""
    folder = tmp_path_factory.mktemp("lm")
    teacher.save_pretrained(folder / "teacher")
    tokenizer.save_pretrained(folder / "teacher")
    (folder / "text.txt").write_text("\n\n".join(documents(120, seed=11)))
    config = {
        "name": "tiny-lm", "seed": 0,
        "teacher": {"model": "teacher"},
        "student": {"from_teacher": {"layers": 2, "choose": "importance", "calibration_blocks": 16}},
        "data": {"text": ["text.txt"], "block_size": 32, "batch_size": 8, "val_fraction": 0.1, "test_fraction": 0.15},
        "distill": {"loss": "forward_kl", "top_k": 16, "attention": [  # MiniLM v2 relations, last layer to last
            {"student": "model.layers.1.self_attn", "teacher": "model.layers.3.self_attn", "relation_heads": 4}]},
        "train": {"epochs": 2, "lr": 0.005, "checkpoint_every": 4},
        "evaluate": {"prompts": ["the cat", "a dog"], "new_tokens": 4, "speed_batches": [1, 2], "speed_repeats": 1},
    }
    return folder, config


def _write(folder, config, name="lm.yaml"):
    path = folder / name
    path.write_text(yaml.safe_dump(config))
    return path


def test_an_lm_run_compares_three_models_and_saves_a_student_transformers_loads(lm_files, tmp_path, capsys):
    folder, config = lm_files
    out = tmp_path / "runs" / "tiny"
    assert main(["lm", str(_write(folder, config)), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "distilled student" in printed and "student alone" in printed
    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {"teacher", "student_alone", "distilled", "distilled_int8"}
    distilled, alone = results["models"]["distilled"], results["models"]["student_alone"]
    int8 = results["models"]["distilled_int8"]  # the distilled student with dynamic int8 weights, measured too
    assert int8["size_mb"] < distilled["size_mb"] and int8["test/perplexity"] > 1
    assert distilled["params"] == alone["params"] < results["models"]["teacher"]["params"]
    for key in ("val/perplexity", "test/perplexity", "test/teacher_agreement", "test/kl_to_teacher", "tokens_per_s@1",
                "tokens_per_s@2", "size_mb", "train_seconds"):
        assert key in distilled, key
    assert results["generations"]["prompts"] == ["the cat", "a dog"] and len(results["generations"]["distilled"]) == 2
    assert "layers [" in results["student"] and "of 4 (importance)" in results["student"]
    logged = (out / "distilled" / "metrics.jsonl").read_text()
    assert "attention/model.layers.1.self_attn->model.layers.3.self_attn" in logged  # the relation term trained
    report = (out / "report.html").read_text()
    assert "Generations" in report and "distilled student" in report
    # the saved student: transformers alone loads it, with its tokenizer, into a text-generation pipeline
    from transformers import AutoModelForCausalLM, pipeline

    model_folder = out / "distilled" / "model"
    model = AutoModelForCausalLM.from_pretrained(model_folder)
    assert model.config.num_hidden_layers == 2
    generator = pipeline("text-generation", model=str(model_folder))
    assert isinstance(generator("the cat", max_new_tokens=3, do_sample=False)[0]["generated_text"], str)
    assert "base_model:" in (model_folder / "README.md").read_text()
    # and the same student with int8 weights, which transformers alone loads too (torchao installed)
    int8_folder = out / "distilled_int8" / "model"
    quantized = AutoModelForCausalLM.from_pretrained(int8_folder)
    weight = quantized.model.layers[0].mlp.up_proj.weight
    assert "Int8" in type(weight).__name__ and "Int8" not in type(model.model.layers[0].mlp.up_proj.weight).__name__
    saved = results["int8_saved"]
    assert saved["size_mb"] < saved["float_size_mb"]
    assert saved["test/perplexity"] == pytest.approx(distilled["test/perplexity"], rel=0.05)
    prompt = torch.tensor([[5, 6, 7]])
    assert torch.allclose(quantized(prompt).logits, model(prompt).logits, atol=0.1)
    assert isinstance(pipeline("text-generation", model=str(int8_folder))("the cat", max_new_tokens=2,
                                                                           do_sample=False)[0]["generated_text"], str)
    assert any("distilled_int8/model" in note for note in results["notes"])
    assert main(["report", str(out)]) == 0  # the report is written again from the folder


def test_an_offline_run_reuses_the_teachers_file(lm_files, tmp_path):
    folder, config = lm_files
    offline = {**config, "cache": str(tmp_path / "cache"), "distill": {"loss": "jsd", "offline": {"k": 8}},
               "train": {"max_steps": 3, "lr": 0.005}}
    path = _write(folder, offline, "offline.yaml")
    assert main(["lm", str(path), "--out", str(tmp_path / "a")]) == 0
    first = json.loads((tmp_path / "a" / "results.json").read_text())["offline"]
    assert first["k"] == 8 and first["bytes_per_token"] == 8 * 4
    files = list((tmp_path / "cache" / "lm-topk").iterdir())
    stamp = (files[0] / "ids.npy").stat().st_mtime_ns
    assert main(["lm", str(path), "--out", str(tmp_path / "b")]) == 0
    assert list((tmp_path / "cache" / "lm-topk").iterdir()) == files  # one file, made once
    assert (files[0] / "ids.npy").stat().st_mtime_ns == stamp
    assert "reusing" in (tmp_path / "b" / "log.txt").read_text()
    sampled = {**offline, "distill": {"offline": {"k": 8, "sampled": 6}}}
    assert main(["lm", str(_write(folder, sampled, "sampled.yaml")), "--out", str(tmp_path / "c")]) == 0
    results = json.loads((tmp_path / "c" / "results.json").read_text())
    assert results["offline"]["sampled"] == 6 and len(list((tmp_path / "cache" / "lm-topk").iterdir())) == 2
    assert results["offline"]["kind"] == "top-2 + 6 sampled"
    assert any("offline file (top-2 + 6 sampled)" in note for note in results["notes"])


def test_a_stopped_lm_run_resumes_to_the_uninterrupted_results(lm_files, tmp_path):
    folder, config = lm_files
    slow = {**config, "train": {"epochs": 2, "lr": 0.005, "checkpoint_every": 2},
            "evaluate": {**config["evaluate"], "speed_batches": [1], "int8": False}}
    path = _write(folder, slow, "slow.yaml")
    env = {**os.environ, "DISTILLKIT_NO_PROGRESS": "1"}
    straight = tmp_path / "straight"
    assert main(["lm", str(path), "--out", str(straight)]) == 0  # (in this process: the same results, no start-up)
    out = tmp_path / "stopped"
    victim = subprocess.Popen([EXECUTABLE, "lm", str(path), "--out", str(out)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list((out / "distilled" / "checkpoints").glob("step-*")):
        time.sleep(0.05)
    victim.send_signal(signal.SIGTERM)
    _, err = victim.communicate(timeout=300)
    assert victim.returncode == 143, err
    assert not (out / "results.json").exists() and not (out / "distilled" / "model").exists()
    resumed = subprocess.run([EXECUTABLE, "lm", str(path), "--out", str(out), "--resume"], env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    again = json.loads((out / "results.json").read_text())["models"]
    before = json.loads((straight / "results.json").read_text())["models"]
    for model in ("student_alone", "distilled"):
        assert again[model]["test/perplexity"] == pytest.approx(before[model]["test/perplexity"], rel=1e-5), model


@pytest.mark.parametrize("change, message", [
    ({"student": {"from_teacher": {"layers": 9}}}, "1 to 4 layers"),
    ({"student": {}}, "exactly one of from_teacher, config, model"),
    ({"distill": {"loss": "kl"}}, "distill.loss"),
    ({"distill": {"on_policy": {"fraction": 0.5}}}, "needs data.pairs"),
    ({"distill": {"loss": "uld"}}, "uld aligns the teacher's and the student's tokens"),
    ({"distill": {"loss": "uld", "top_k": 16, "offline": {"k": 8}}}, "does not combine with offline, top_k"),
    ({"distill": {"loss": "jsd", "offline": {"k": 8, "sampled": 8}}}, "only forward KL at temperature 1"),
    ({"distill": {"offline": {"k": 8, "sampled": 9}}}, "distill.offline.sampled (9) cannot exceed"),
    ({"distill": {"attention": [{"student": "model.layers.5.self_attn", "teacher": "model.layers.3.self_attn"}]}},
     "model.layers.5.self_attn.q_proj"),
    ({"data": {"text": ["missing.txt"], "block_size": 32}}, "text not found"),
    ({"data": {"text": ["text.txt"], "block_size": 32}, "teacher": {"model": "nowhere/at-all.gguf"}}, "GGUF file not found"),
])
def test_bad_lm_configs_fail_in_one_line_with_nothing_written(lm_files, tmp_path, capsys, change, message):
    folder, config = lm_files
    out = tmp_path / "runs" / "bad"
    assert main(["lm", str(_write(folder, {**config, **change}, "bad.yaml")), "--out", str(out)]) != 0
    assert message in capsys.readouterr().err.replace("\n", " ")
    assert not out.exists()


def test_the_shipped_lm_configs_are_valid_and_the_kind_is_listed(capsys):
    from distillkit.config.lm import LMConfig
    from distillkit.config.loading import load_config

    files = sorted((Path(__file__).resolve().parents[2] / "configs" / "lm").glob("*.yaml"))
    assert len(files) == 3
    for path in files:
        assert load_config(path, model=LMConfig).name == path.stem
    assert main(["list", "kinds"]) == 0
    assert "distil a causal language model" in capsys.readouterr().out


def test_an_lm_run_on_pairs_scores_the_answers_against_the_references_and_the_teacher(lm_files, tmp_path):
    from tests.lm.conftest import sentences

    folder, config = lm_files
    lines = [json.dumps({"prompt": f"question {k}: {s}", "response": [s.split()[-1].strip("."), s]})
             for k, s in enumerate(sentences(60, seed=5))]
    (folder / "qa.jsonl").write_text("\n".join(lines) + "\n")
    raw = {**config, "data": {"pairs": "qa.jsonl", "block_size": 48, "batch_size": 8, "val_fraction": 0.1,
                              "test_fraction": 0.2},
           "train": {"epochs": 1, "lr": 0.005}, "evaluate": {**config["evaluate"], "answers": 5, "int8": False}}
    out = tmp_path / "runs" / "qa"
    assert main(["lm", str(_write(folder, raw, "qa.yaml")), "--out", str(out)]) == 0
    models = json.loads((out / "results.json").read_text())["models"]
    for name in ("teacher", "student_alone", "distilled"):
        assert 0.0 <= models[name]["answers/f1"] <= 1.0 and 0.0 <= models[name]["answers/exact_match"] <= 1.0
    assert "answers/teacher_f1" in models["distilled"] and "answers/teacher_f1" not in models["teacher"]
    assert "answer F1" in (out / "report.md").read_text()


def test_lora_students_train_only_their_adapters_and_are_saved_merged(lm_files, tmp_path):
    from safetensors.torch import load_file

    folder, config = lm_files
    lora = {**config, "student": {**config["student"], "lora": {"r": 4, "target_modules": ["q_proj", "v_proj"]}},
            "distill": {"loss": "forward_kl"}, "train": {"epochs": 1, "lr": 0.01}}
    out = tmp_path / "lora"
    assert main(["lm", str(_write(folder, lora, "lora.yaml")), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert "trained through LoRA adapters (r 4, alpha 16) on q_proj, v_proj" in results["student"]
    trainable = int(results["student"].split(": ")[-1].split(" trainable")[0].replace(",", ""))
    assert trainable == 2 * ((4 * 48 + 48 * 4) + (4 * 48 + 24 * 4))  # 2 layers: A and B of q (48 -> 48), v (48 -> 24)
    weights = {}
    for model in ("student_alone", "distilled"):
        saved = load_file(out / model / "model" / "model.safetensors")
        assert not any("lora" in key for key in saved)  # merged: a plain model
        weights[model] = saved
    teacher = load_file(folder / "teacher" / "model.safetensors")
    mlp = "model.layers.0.mlp.up_proj.weight"  # not adapted: as pruned from the teacher, in both students
    assert any(torch.equal(weights["distilled"][mlp], teacher[f"model.layers.{k}.mlp.up_proj.weight"]) for k in range(4))
    assert torch.equal(weights["distilled"][mlp], weights["student_alone"][mlp])
    query = "model.layers.0.self_attn.q_proj.weight"  # adapted and merged: changed by training
    assert not any(torch.equal(weights["distilled"][query], teacher[f"model.layers.{k}.self_attn.q_proj.weight"])
                   for k in range(4))
