"""Exporting a trained classifier as a TensorFlow Serving SavedModel.

The SavedModel holds a plain `tf.Module`, not the Keras model, so loading it needs only
TensorFlow: no tf_finetune, no transformers. Its signatures take the fixed tensor
contract `input_ids`, `attention_mask`, `token_type_ids` (int32 `[batch, tokens]`) and
return `logits` and `probabilities` (float32 `[batch, classes]`).
"""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

import numpy as np
import tensorflow as tf

from tf_finetune.errors import ExportError

logger = logging.getLogger(__name__)

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
TOKEN_IDS_SIGNATURE = "token_ids"


def export_saved_model(model, label_names: list[str], input_names: list[str], model_dir: Path):
    """Writes the next integer version of a SavedModel under `model_dir`.

    The version is written under a temporary name beside its final place, reloaded and
    checked against `model`, and only then renamed, so a reader never sees a partial
    export and no existing version is overwritten.

    Args:
        model: The trained TF sequence classifier.
        label_names: Class names in id order, stored in the SavedModel as `label_names`.
        input_names: The inputs the model takes (a subset of `INPUT_NAMES`); the
            signature takes all three and passes on these.
        model_dir: The folder of versions (TensorFlow Serving's model base path).

    Returns:
        The path of the new version folder.

    Raises:
        ExportError: The SavedModel cannot be written, or its outputs differ from the model's.
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    version = 1 + max((int(p.name) for p in model_dir.iterdir() if p.name.isdigit()), default=0)
    staging = model_dir / f".tmp-{version}-{uuid.uuid4().hex[:8]}"
    module = _serving_module(model, label_names, input_names)
    signature = module.predict_token_ids.get_concrete_function()
    try:
        tf.saved_model.save(
            module,
            str(staging),
            signatures={"serving_default": signature, TOKEN_IDS_SIGNATURE: signature},
        )
        _check_reload(staging, model, input_names)
        final = model_dir / str(version)
        staging.rename(final)
    except Exception:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("Exported SavedModel version %d to %s.", version, final)
    return final


def _serving_module(model, label_names, input_names) -> tf.Module:
    module = tf.Module()
    # Tracking the variables (and not the Keras model) keeps Keras objects out of the
    # SavedModel: it loads as plain TensorFlow functions over these variables.
    module.model_variables = list(model.variables)
    module.label_names = tf.Variable(label_names, dtype=tf.string, trainable=False)
    spec = tf.TensorSpec([None, None], tf.int32)

    @tf.function(input_signature=[spec, spec, spec])
    def predict_token_ids(input_ids, attention_mask, token_type_ids):
        given = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": token_type_ids,
        }
        logits = model({name: given[name] for name in input_names}, training=False).logits
        logits = tf.cast(logits, tf.float32)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1)}

    module.predict_token_ids = predict_token_ids
    return module


def _check_reload(path: Path, model, input_names) -> None:
    """Reloads the SavedModel and compares it with the model on a probe batch."""
    probe = {
        "input_ids": tf.constant([[2, 5, 7, 3, 0], [2, 9, 3, 0, 0]], tf.int32),
        "attention_mask": tf.constant([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]], tf.int32),
        "token_type_ids": tf.zeros([2, 5], tf.int32),
    }
    expected = model({n: probe[n] for n in input_names}, training=False).logits.numpy()
    served = tf.saved_model.load(str(path)).signatures["serving_default"](**probe)
    if not np.allclose(served["logits"].numpy(), expected, atol=1e-4):
        raise ExportError(
            f"The SavedModel written to {path} does not reproduce the model's logits; "
            "nothing was exported. Report this as a bug."
        )
