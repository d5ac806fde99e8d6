"""Tests of the SavedModel export."""

import numpy as np
import pytest
import tensorflow as tf

from tf_finetune import export
from tf_finetune.errors import ExportError
from tf_finetune.modeling import build_model, load_model_config


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    path = str(tiny_checkpoint)
    return build_model(path, load_model_config(path, ["neg", "pos"]))


INPUTS = {
    "input_ids": np.array([[2, 5, 20, 3, 0, 0], [2, 9, 12, 14, 8, 3]], np.int32),
    "attention_mask": np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], np.int32),
    "token_type_ids": np.zeros((2, 6), np.int32),
}


def test_export_reloads_with_the_same_outputs(model, tmp_path):
    version = export.export_saved_model(
        model, ["neg", "pos"], ["input_ids", "token_type_ids", "attention_mask"], tmp_path
    )
    assert version == tmp_path / "1"
    loaded = tf.saved_model.load(str(version))
    assert set(loaded.signatures) == {"serving_default", export.TOKEN_IDS_SIGNATURE}
    outputs = loaded.signatures["serving_default"](**{k: tf.constant(v) for k, v in INPUTS.items()})
    expected = model(INPUTS, training=False).logits.numpy()
    np.testing.assert_allclose(outputs["logits"].numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(
        outputs["probabilities"].numpy(), tf.nn.softmax(expected).numpy(), atol=1e-6
    )
    assert [n.decode() for n in loaded.label_names.numpy()] == ["neg", "pos"]
    signature = loaded.signatures["serving_default"]
    assert set(signature.structured_input_signature[1]) == set(export.INPUT_NAMES)
    assert signature.structured_outputs["probabilities"].shape.as_list() == [None, 2]


def test_a_new_export_is_the_next_version(model, tmp_path):
    names = ["input_ids", "token_type_ids", "attention_mask"]
    (tmp_path / "7").mkdir()
    assert export.export_saved_model(model, ["neg", "pos"], names, tmp_path) == tmp_path / "8"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["7", "8"]


def test_a_failed_export_leaves_nothing(model, tmp_path, monkeypatch):
    def broken_check(path, model, input_names):
        raise ExportError("simulated mismatch")

    monkeypatch.setattr(export, "_check_reload", broken_check)
    with pytest.raises(ExportError, match="simulated"):
        export.export_saved_model(model, ["neg", "pos"], ["input_ids"], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_models_without_segment_ids_ignore_them(model, tmp_path):
    """The signature always takes all three inputs and passes on the model's own."""
    version = export.export_saved_model(model, ["neg", "pos"], ["input_ids"], tmp_path)
    served = tf.saved_model.load(str(version)).signatures["serving_default"]
    ones = dict(INPUTS, token_type_ids=np.ones((2, 6), np.int32))
    a = served(**{k: tf.constant(v) for k, v in INPUTS.items()})["logits"].numpy()
    b = served(**{k: tf.constant(v) for k, v in ones.items()})["logits"].numpy()
    np.testing.assert_array_equal(a, b)
