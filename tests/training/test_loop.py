"""Tests of the Keras fit loop: validation, speed figures, logging and TensorBoard."""

import logging

import pytest
import tensorflow as tf

from tf_finetune.data.batching import grouped_batches
from tf_finetune.modeling.models import build_model, compile_model, load_model_config
from tf_finetune.training.checkpointing import Checkpointer, ResumePoint
from tf_finetune.training.loop import ValidationSplit, train


@pytest.fixture
def trained(tiny_checkpoint, tmp_path, caplog):
    import datasets

    path = str(tiny_checkpoint)
    model = build_model(path, load_model_config(path, ["neg", "pos"]))
    compile_model(model, 3e-3)
    # Token 5 ("good") means pos, token 10 ("bad") means neg; lengths 4 to 7.
    ids = [[2, 5, *[20] * (i % 4), 3] if i % 2 else [2, 10, *[20] * (i % 4), 3] for i in range(32)]
    split = datasets.Dataset.from_dict(
        {"input_ids": ids, "attention_mask": [[1] * len(r) for r in ids], "labels": [1, 0] * 16}
    )
    names = ["input_ids", "attention_mask"]
    train_batches = grouped_batches(split, names, {}, 8, group=True, epochs=3, seed=0)
    validation = ValidationSplit(
        grouped_batches(split, names, {}, 8, group=True),
        split["labels"][:],
        [f"text {i}" for i in range(32)],
        ["neg", "pos"],
    )
    with caplog.at_level(logging.INFO, logger="tf_finetune"):
        result = train(
            model,
            train_batches,
            validation,
            epochs=3,
            log_dir=tmp_path / "logs",
            checkpointer=Checkpointer(tmp_path / "checkpoints", model),
            checkpoint_steps=3,
            start=ResumePoint.start(),
        )
    return result, train_batches, model, caplog


def test_train_validates_and_logs_every_epoch(trained, tmp_path):
    result, _, _, caplog = trained
    history = result.history
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "samples_per_second"} <= set(history)
    assert all(len(values) == 3 for values in history.values())
    assert history["val_loss"][-1] < history["val_loss"][0]
    messages = [r.getMessage() for r in caplog.get_records("setup")]
    epoch_lines = [m for m in messages if m.startswith("Epoch")]
    assert [line.split(":")[0] for line in epoch_lines] == ["Epoch 1", "Epoch 2", "Epoch 3"]
    assert f"val_accuracy {history['val_accuracy'][2]:.4f}" in epoch_lines[2]
    assert f"{history['samples_per_second'][2]:.1f} samples/s" in epoch_lines[2]
    assert list((tmp_path / "logs" / "train").glob("events.out.tfevents.*"))


def test_train_reports_speed_padding_and_tracing(trained):
    result, batches, _, _ = trained
    stats, history = result.stats, result.history
    assert stats["epochs"] == 3
    assert stats["traced_train_functions"] == 1  # slots made before the first step
    assert stats["train_seconds"] == pytest.approx(sum(history["train_seconds"]))
    for epoch in range(3):
        seconds = history["train_seconds"][epoch]
        padding = batches.padding(epoch)
        assert history["samples_per_second"][epoch] == pytest.approx(32 / seconds)
        assert history["padded_tokens_per_second"][epoch] == pytest.approx(
            padding.padded_tokens / seconds
        )
        assert history["padding_share"][epoch] == pytest.approx(padding.padding_share)
    assert stats["samples_per_second"] == pytest.approx(96 / stats["train_seconds"])
    # The first step traces the train function; later steps reuse it.
    assert stats["tracing_seconds"] > 5 * stats["median_step_seconds"]
    # Peak (getrusage) and current (/proc) memory are read differently: allow 1%.
    assert stats["peak_rss_mib"] >= 0.99 * max(history["rss_mib"]) > 100
    assert [e["padding_share"] for e in stats["per_epoch"]] == history["padding_share"]
    # Memory settles after the first epoch: no retracing or cache growth per epoch.
    assert history["rss_mib"][2] - history["rss_mib"][1] < 32


def test_train_function_is_traced_once_for_every_batch_shape(trained):
    _, batches, model, _ = trained
    widths = {int(b[0]["input_ids"].shape[1]) for b in batches.dataset.as_numpy_iterator()}
    assert len(widths) > 1
    assert model.train_function.experimental_get_tracing_count() == 1


def test_under_xla_each_bucket_compiles_once_and_predicts_as_without(tiny_checkpoint, tmp_path):
    import datasets
    import numpy as np

    from tf_finetune.evaluation.scoring import predict_logits

    path = str(tiny_checkpoint)
    model = build_model(path, load_model_config(path, ["neg", "pos"]))
    compile_model(model, 3e-3, jit_compile=True)
    # Lengths 3 to 18, in batches of similar length fed as 2 buckets.
    ids = [[2, 5 if i % 2 else 10, *[20] * (i % 16), 3] for i in range(64)]
    split = datasets.Dataset.from_dict(
        {"input_ids": ids, "attention_mask": [[1] * len(r) for r in ids], "labels": [1, 0] * 32}
    )
    names = ["input_ids", "attention_mask"]
    options = {"group": True, "length_buckets": 2}
    train_batches = grouped_batches(split, names, {}, 8, epochs=2, seed=0, **options)
    evaluation = grouped_batches(split, names, {}, 8, **options)
    result = train(
        model,
        train_batches,
        ValidationSplit(evaluation, split["labels"][:], ["t"] * 64, ["neg", "pos"]),
        epochs=2,
        log_dir=tmp_path / "logs",
        checkpointer=Checkpointer(tmp_path / "checkpoints", model),
        checkpoint_steps=100,
        start=ResumePoint.start(),
        compiles_per_shape=True,
    )
    assert len(set(train_batches.widths)) == 2
    assert result.stats["compiled_shapes"] == 2
    # XLA compiled each bucket at its first step; no later step compiled again.
    assert result.stats["tracing_seconds"] > 10 * max(result.stats["median_step_seconds"], 1e-3)
    assert result.history["val_loss"][-1] < result.history["val_loss"][0]  # it learns
    # The compiled predict step gives the plain forward pass's logits.
    compiled = predict_logits(model, evaluation)
    features = {name: tf.ragged.constant(split[name][:]).to_tensor() for name in names}
    plain = model(features, training=False).logits.numpy()
    np.testing.assert_allclose(compiled, plain, atol=1e-4)
