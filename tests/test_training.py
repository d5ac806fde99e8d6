"""Tests of the Keras fit loop: per-epoch validation, logging and TensorBoard."""

import logging

import numpy as np
import tensorflow as tf

from tf_finetune.modeling import build_model, compile_model, load_model_config
from tf_finetune.training import train


def test_train_validates_and_logs_every_epoch(tiny_checkpoint, tmp_path, caplog):
    path = str(tiny_checkpoint)
    model = build_model(path, load_model_config(path, ["neg", "pos"]))
    compile_model(model, 3e-3)
    # Token 5 ("good") means pos, token 10 ("bad") means neg.
    ids = np.array([[2, 5, 20, 3], [2, 10, 20, 3]] * 16, np.int32)
    labels = np.array([1, 0] * 16)
    features = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    data = tf.data.Dataset.from_tensor_slices((features, labels)).batch(8)

    with caplog.at_level(logging.INFO, logger="tf_finetune"):
        history = train(model, data, data, epochs=3, log_dir=tmp_path / "logs")

    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(values) == 3 for values in history.values())
    assert history["val_loss"][-1] < history["val_loss"][0]
    epoch_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Epoch")]
    assert [line.split(":")[0] for line in epoch_lines] == ["Epoch 1", "Epoch 2", "Epoch 3"]
    assert f"val_accuracy {history['val_accuracy'][2]:.4f}" in epoch_lines[2]
    assert list((tmp_path / "logs" / "train").glob("events.out.tfevents.*"))
