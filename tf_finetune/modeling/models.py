"""Building and compiling `TFAutoModelForSequenceClassification` models."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from tf_finetune.data import packaged
from tf_finetune.errors import ModelError, first_line

logger = logging.getLogger(__name__)

# Weights that load as data: Keras HDF5 weights (read by name with h5py, never as a
# Keras model with its layers' code) and safetensors.
_SAFE_WEIGHTS = (
    "tf_model.h5",
    "tf_model.h5.index.json",
    "model.safetensors",
    "model.safetensors.index.json",
)
# PyTorch's pickle format: loading it can run arbitrary code.
_PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
_WEIGHT_FILES = _SAFE_WEIGHTS + _PICKLE_WEIGHTS


def resolve_model_path(reference: str, allow_pickle: bool = False) -> str:
    """Returns a local directory or Hub name for a `--model` value.

    Args:
        reference: A checkpoint directory, a Hub name, or a `packaged:` name.
        allow_pickle: Accept a directory whose only weights are `pytorch_model.bin`.

    Raises:
        ModelError: A local path does not exist or holds no config or weights, or
            only pickle-based weights without `allow_pickle`.
    """
    if packaged.is_packaged(reference):
        return str(packaged.model_path(reference))
    path = Path(reference).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(
                f"Model directory {path} has no config.json. "
                "Point --model at a save_pretrained directory."
            )
        if not any((path / name).is_file() for name in _WEIGHT_FILES):
            raise ModelError(
                f"Model directory {path} holds no weights (looked for "
                f"{', '.join(_WEIGHT_FILES[::2])}). Point --model at a checkpoint directory."
            )
        if not allow_pickle and not any((path / name).is_file() for name in _SAFE_WEIGHTS):
            raise ModelError(
                f"Model directory {path} has only pickle-based weights (pytorch_model.bin), "
                "which can run code when loaded. Convert them to model.safetensors, or pass "
                "--allow-pickle-weights if you trust their source."
            )
        return str(path)
    if path.exists() or _looks_like_path(reference):
        raise ModelError(
            f"Model path {reference} is not a directory. Pass a checkpoint directory, "
            "a Hugging Face Hub name, or " + "'packaged:all-MiniLM-L6-v2'."
        )
    return reference


def load_model_config(model_path: str, label_names: list[str], multi_label: bool = False):
    """Loads the checkpoint's config with the run's label names (and problem) set.

    Raises:
        ModelError: The checkpoint cannot be found (locally or on the Hub).
    """
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(
            model_path,
            trust_remote_code=False,
            num_labels=len(label_names),
            id2label=dict(enumerate(label_names)),
            label2id={name: i for i, name in enumerate(label_names)},
            problem_type="multi_label_classification" if multi_label else None,
        )
    except (OSError, ValueError) as error:
        raise ModelError(
            f"Cannot load model {model_path!r}: {first_line(error)}. Pass a local "
            "checkpoint directory, or check the Hub name and the network "
            "(HF_HUB_OFFLINE=1 forbids downloads)."
        ) from None


def build_model(model_path: str, model_config, allow_pickle: bool = False):
    """Loads the pretrained weights into a TF sequence classifier.

    A checkpoint with only PyTorch `model.safetensors` weights is converted on load.
    A classification head whose size does not match the labels is re-initialised.
    Pickle-based `pytorch_model.bin` weights load only with `allow_pickle` (and
    PyTorch installed); custom model code (`trust_remote_code`) never runs.

    Raises:
        ModelError: The weights cannot be loaded.
    """
    from transformers import TFAutoModelForSequenceClassification

    try:
        model = TFAutoModelForSequenceClassification.from_pretrained(
            model_path,
            config=model_config,
            ignore_mismatched_sizes=True,
            from_pt=allow_pickle and not _has_safe_weights(model_path),
            trust_remote_code=False,
        )
    except (OSError, ValueError, KeyError, ImportError) as error:
        raise ModelError(
            f"Cannot load the weights of {model_path!r} into a TensorFlow classifier: "
            f"{first_line(error)}."
        ) from None
    logger.info(
        "Loaded %s (%s, %s parameters).",
        model_path,
        type(model).__name__,
        f"{model.count_params():,}",
    )
    return traced_as_written(model)


def traced_as_written(model):
    """Keeps autograph from rewriting the model's Python code when it is traced.

    Hugging Face's TF models are written for graph mode (their XLA and SavedModel
    exports need it), so autograph's rewrite of their code only adds tracing time. On
    MiniLM (2 CPU cores, the same losses either way), tracing the forward pass alone
    took 0.5 s against 3.2-3.4 s, and the first training step alone 2.3-2.8 s against
    5.1-5.4 s. Marking the model's `call` is enough: autograph stays off for
    everything it calls.
    """
    import tensorflow as tf

    model.call = tf.autograph.experimental.do_not_convert(model.call)
    return model


def activations_in_float32(model) -> int:
    """Makes a bfloat16 model's smooth activations compute in float32; returns how many.

    TensorFlow's CPU kernels for bfloat16 `erfc`, `tanh` and `sigmoid` are slower than
    casting to float32 and back: MiniLM's GELU, forward and backward over one batch's
    [864, 1536] activations, took 9.9 ms in bfloat16 against 4.1 ms through float32 (2
    cores with AVX512_BF16), and with its six GELUs in float32 a bfloat16 MiniLM step
    took 9% less time. The activation rounds its float32 result to bfloat16, so the
    layer's output is at least as exact as before.

    Only the activations Hugging Face's layers hold (`transformers.activations_tf`)
    are replaced, and only those measured faster this way (`_FLOAT32_ACTIVATIONS`);
    Keras' own layers are left as they are.
    """
    from transformers.activations_tf import ACT2FN

    slow = {id(ACT2FN[name]) for name in _FLOAT32_ACTIVATIONS if name in ACT2FN}
    replaced = 0
    for layer in model.submodules:
        if not type(layer).__module__.startswith("transformers."):
            continue
        for name, value in list(vars(layer).items()):
            if id(value) in slow:
                setattr(layer, name, _in_float32(value))
                replaced += 1
    return replaced


# Forward and backward over MiniLM-sized bfloat16 activations, bfloat16 kernels against
# a float32 round trip: gelu 2.4x slower, sigmoid 2.0x, quick_gelu 1.65x, tanh 1.6x,
# mish 1.5x, gelu_new 1.3x, silu and swish 1.1x; gelu_fast even, and relu and gelu_10
# faster in bfloat16, so those stay.
_FLOAT32_ACTIVATIONS = (
    "gelu",
    "gelu_new",
    "mish",
    "quick_gelu",
    "sigmoid",
    "silu",
    "swish",
    "tanh",
)


def _in_float32(activation):
    import tensorflow as tf

    @functools.wraps(activation)
    def in_float32(x):
        if x.dtype != tf.bfloat16:
            return activation(x)
        return tf.cast(activation(tf.cast(x, tf.float32)), tf.bfloat16)

    return in_float32


def compile_model(
    model,
    learning_rate,
    jit_compile: bool = False,
    *,
    weight_decay: float = 0.0,
    clip_norm: float | None = None,
    accumulation_steps: int = 1,
    class_weights: list[float] | None = None,
    label_smoothing: float = 0.0,
    freeze_base: bool = False,
    multi_label: bool = False,
) -> None:
    """Compiles with the tutorial's recipe: Adam, sparse categorical cross-entropy on logits.

    Adam is `optimization.FusedAdam` (the same update, applied by fused kernels), and
    its slots are created here so the train function is traced once. Under a mixed
    precision policy the loss is computed on float32 logits and Keras adds loss scaling.
    Call under the strategy scope the model was built in.

    Args:
        model: A transformers TF classifier.
        learning_rate: A rate, or a schedule of the optimizer step (`schedules`).
        jit_compile: Compile the forward and backward pass of the train step with XLA
            (`optimization.xla_train_step`).
        weight_decay: AdamW's decoupled weight decay; 0 is Adam.
        clip_norm: Clip gradients to this global norm.
        accumulation_steps: Batches averaged into one update (`AccumulationGroups`
            must be among the callbacks when more than 1).
        class_weights: A loss weight per class id (`losses.class_weights`).
        label_smoothing: Label smoothing of the loss.
        freeze_base: Train only the head (`freezing`); the optimizer's slots are still
            created for every variable, so checkpoints have one shape.
        multi_label: A sigmoid per label and binary cross-entropy (`class_weights`
            then weigh each label's positives), with exact match as the accuracy.
    """
    import tf_keras

    from tf_finetune.modeling import freezing, losses, optimization

    variables = list(model.trainable_variables)
    if freeze_base:
        freezing.set_base_trainable(model, False)
    model.compile(
        optimizer=optimization.FusedAdam(
            learning_rate,
            weight_decay=weight_decay,
            clip_norm=clip_norm,
            accumulation_steps=accumulation_steps,
        ),
        loss=(losses.MultiLabelLoss if multi_label else losses.ClassificationLoss)(
            class_weights, label_smoothing
        ),
        metrics=[
            tf_keras.metrics.MeanMetricWrapper(losses.exact_match, name="accuracy")
            if multi_label
            else tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        ],
    )
    if jit_compile:
        use_xla_train_step(model)
    optimization.create_slots(model.optimizer, variables)


def hidden_size(model_config) -> int | None:
    """The width of the model's layers: `hidden_size`, or DistilBERT's `dim`."""
    return getattr(model_config, "hidden_size", None) or getattr(model_config, "dim", None)


def float32_copy(model):
    """Returns `model` computing in float32: itself, or a copy with its trained weights.

    Under a mixed precision policy the weights are float32 and the layers compute in
    float16 or bfloat16. The report and the export use this copy, so they score and
    serve the weights at full precision, as any float32 consumer will.
    """
    if model.compute_dtype == "float32":
        return model
    from transformers import TFAutoModelForSequenceClassification

    from tf_finetune.runtime import distribution

    with distribution.precision_policy("float32"):
        copy = TFAutoModelForSequenceClassification.from_config(model.config)
        copy.build_in_name_scope()
    copy.set_weights(model.get_weights())
    return traced_as_written(copy)


def use_xla_train_step(model) -> None:
    """Compiles the model's train and predict steps with XLA, of its trainable variables now.

    The train step is `optimization.xla_train_step`; the predict step's forward pass
    is compiled too, so validation and the report run the same compiled model. XLA
    compiles once per batch shape: feed few lengths (`length_buckets`).
    """
    import tensorflow as tf
    from tf_keras.src.engine import data_adapter

    from tf_finetune.modeling import optimization

    model.train_step = optimization.xla_train_step(model)

    @tf.function(jit_compile=True, reduce_retracing=True)
    def forward(features):
        return {"logits": model(features, training=False).logits}

    def predict_step(data):
        features, _, _ = data_adapter.unpack_x_y_sample_weight(data)
        return forward(features)

    model.predict_step = predict_step


def _has_safe_weights(model_path: str) -> bool:
    path = Path(model_path)
    return not path.is_dir() or any((path / name).is_file() for name in _SAFE_WEIGHTS)


def _looks_like_path(reference: str) -> bool:
    return reference.startswith((".", "/", "~")) or reference.count("/") > 1 or "\\" in reference
