import json

import pytest
import torch

from distillkit.training.checkpoint import (
    CheckpointError,
    find_latest,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)


def save(root, step, value=1.0, keep=2):
    return save_checkpoint(root, step, model_state={"w": torch.full((3,), value)},
                           optimizer_state={"optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}},
                           trainer_state={"step": step}, rng_states={0: {"cpu": torch.get_rng_state()}}, keep=keep)


def test_round_trip_and_rotation(tmp_path):
    for step in (1, 2, 3):
        save(tmp_path, step, value=step)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000002", "step-00000003"]
    state = load_checkpoint(find_latest(tmp_path))
    assert torch.equal(state["model"]["w"], torch.full((3,), 3.0))
    assert state["trainer"] == {"step": 3} and state["optimizer"]["optimizer"]["param_groups"][0]["lr"] == 0.1


def test_incomplete_or_corrupt_checkpoints_are_skipped_or_refused(tmp_path):
    save(tmp_path, 1)
    good = save(tmp_path, 2)
    (good / "manifest.json").unlink()  # as if killed before the manifest was written
    assert find_latest(tmp_path).name == "step-00000001"
    with pytest.raises(CheckpointError, match="incomplete or corrupt"):
        load_checkpoint(good)
    one = find_latest(tmp_path)
    data = bytearray((one / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF  # flip a bit, same size
    (one / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        load_checkpoint(one)


def test_saving_the_same_step_again_replaces_it(tmp_path):
    save(tmp_path, 5, value=1.0)
    save(tmp_path, 5, value=2.0)
    assert torch.equal(load_checkpoint(tmp_path / "step-00000005")["model"]["w"], torch.full((3,), 2.0))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_optimizer_file_is_loaded_without_unpickling_objects(tmp_path):
    folder = save(tmp_path, 1)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, folder / "optimizer.pt")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["optimizer.pt"]["bytes"] = (folder / "optimizer.pt").stat().st_size
    import hashlib
    manifest["files"]["optimizer.pt"]["sha256"] = hashlib.sha256((folder / "optimizer.pt").read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="never unpickles") as raised:
        load_checkpoint(folder)
    # distillkit's message is the last word: PyTorch's suggestion to load with weights_only=False is not chained
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert "weights_only=False" not in str(raised.value)


def test_a_latest_pointer_into_another_models_folder_is_not_followed(tmp_path):
    save(tmp_path / "teacher" / "checkpoints", 50, value=9.0)
    own = save(tmp_path / "student" / "checkpoints", 3, value=1.0)
    pointer = tmp_path / "student" / "checkpoints" / "latest"
    pointer.write_text("../../teacher/checkpoints/step-00000050")
    assert find_latest(tmp_path / "student" / "checkpoints") == own
    pointer.write_text("step-00000003")  # negative control: its own pointer is read
    assert find_latest(tmp_path / "student" / "checkpoints") == own


def test_a_checkpoint_of_another_model_is_refused_in_one_line(tmp_path):
    from torch import nn

    from distillkit.core.distiller import Distiller
    from distillkit.data import TensorDictDataset
    from distillkit.training.trainer import Trainer

    data = TensorDictDataset(input=torch.randn(32, 4), target=torch.arange(32) % 2)
    big = Trainer(Distiller(None, nn.Linear(4, 2)), data, epochs=1, batch_size=8,
                  checkpoint_dir=tmp_path / "big", progress=False)
    big.fit()
    other = Trainer(Distiller(None, nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))), data, epochs=1, batch_size=8,
                    checkpoint_dir=tmp_path / "small", progress=False)
    with pytest.raises(CheckpointError, match="is not a checkpoint of this model"):
        other.fit(resume=find_latest(tmp_path / "big"))
