"""Per-epoch evaluation in TensorBoard, read back with TensorBoard's own reader."""

import datasets
import numpy as np
import pytest
import tensorflow as tf
from conftest import make_rows
from sklearn.metrics import accuracy_score, classification_report, f1_score
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tf_finetune.data import batching
from tf_finetune.modeling.models import build_model, compile_model, load_model_config
from tf_finetune.training import loop, summaries

LABELS = ["neg", "pos"]


def read_tensors(folder):
    events = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    events.Reload()
    return {tag: events.Tensors(tag) for tag in events.Tags()["tensors"]}


def test_report_scalars_are_scikit_learns():
    y_true, y_pred = [0, 0, 1, 1, 1, 2], [0, 1, 1, 1, 2, 2]
    names = ["a", "b", "c"]
    report = classification_report(y_true, y_pred, target_names=names, output_dict=True)
    scalars = summaries.report_scalars(report, names)
    assert scalars["eval_accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert scalars["eval_macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert scalars["eval_weighted_recall"] == pytest.approx(report["weighted avg"]["recall"])
    per_class = f1_score(y_true, y_pred, average=None)
    assert [scalars[f"eval_f1/{n}"] for n in names] == pytest.approx(list(per_class))
    assert len(scalars) == 1 + 2 * 3 + 3


def test_misclassified_table_shows_the_most_confident_mistakes_first():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    table = summaries.misclassified_table(
        ["right", "a | pipe", "unsure", "right too"], [0, 0, 1, 1], probabilities, LABELS
    )
    lines = table.splitlines()
    assert lines[0] == "2 of 4 misclassified; the most confident:"
    assert lines[4] == "| a \\| pipe | neg | pos | 0.800 |"
    assert lines[5] == "| unsure | pos | neg | 0.600 |"
    assert summaries.misclassified_table(["x"], [0], np.array([[1.0, 0.0]]), LABELS) == (
        "No misclassified examples."
    )


def test_each_epoch_logs_scores_equal_to_scikit_learns_on_the_same_predictions(
    tiny_checkpoint, tmp_path
):
    from transformers import BertTokenizerFast

    tokenizer = BertTokenizerFast.from_pretrained(tiny_checkpoint)
    rows = make_rows(20, seed=5)
    texts = [text for text, _ in rows]
    labels = [LABELS.index(label) for _, label in rows]
    split = datasets.Dataset.from_dict({**tokenizer(texts), "labels": labels})
    names = ["input_ids", "attention_mask", "token_type_ids"]
    # Batches sorted by length: the callback must put predictions back in order.
    batches = batching.grouped_batches(split, names, batching.pad_values(tokenizer), 8, group=True)
    path = str(tiny_checkpoint)
    model = build_model(path, load_model_config(path, LABELS))
    compile_model(model, 1e-3)
    validation = loop.ValidationSplit(batches, labels, texts, LABELS)
    callback = summaries.ValidationSummaries(validation, tmp_path)
    callback.set_model(model)
    logs = {"loss": 0.5}
    callback.on_epoch_end(3, logs)
    # One prediction gives what Keras' own validation pass would have.
    keras_loss, keras_accuracy = model.evaluate(batches.dataset, verbose=0)
    assert logs["val_loss"] == pytest.approx(keras_loss, abs=1e-5)
    assert logs["val_accuracy"] == pytest.approx(keras_accuracy, abs=1e-6)
    assert set(logs) == {
        "loss", "val_loss", "val_accuracy", "val_macro_f1", "val_weighted_f1", "val_micro_f1",
        "val_samples_f1",
    }  # fmt: skip
    # One label per example: micro F1 and the mean of each example's F1 are the accuracy.
    assert logs["val_micro_f1"] == logs["val_samples_f1"] == logs["val_accuracy"]
    assert not read_tensors(tmp_path / "validation")  # held back until the checkpoint
    callback.flush()
    callback.on_train_end()

    padded = dict(tokenizer(texts, padding=True, return_tensors="np"))
    predicted = model.predict(padded, verbose=0)["logits"].argmax(axis=-1)
    logged = read_tensors(tmp_path / "validation")
    value = {tag: float(tf.make_ndarray(e[0].tensor_proto)) for tag, e in logged.items()
             if tag.startswith("eval_")}  # fmt: skip
    assert [e.step for e in logged["eval_macro_f1"]] == [3]
    assert value["eval_macro_f1"] == pytest.approx(f1_score(labels, predicted, average="macro"))
    assert value["eval_accuracy"] == pytest.approx(accuracy_score(labels, predicted))
    assert value["eval_f1/pos"] == pytest.approx(f1_score(labels, predicted))

    width, height, png = tf.make_ndarray(logged["confusion_matrix"][0].tensor_proto)
    image = tf.io.decode_png(png)
    assert image.shape[:2] == (int(height), int(width)) == (400, 400)
    table = tf.make_ndarray(logged["misclassified"][0].tensor_proto).item().decode()
    mistakes = int((predicted != np.array(labels)).sum())
    expected = f"{mistakes} of 20 misclassified" if mistakes else "No misclassified examples."
    assert table.startswith(expected)


def test_a_full_disk_is_an_export_error_naming_the_log_folder(full_disk):
    from tf_finetune.config import load_config
    from tf_finetune.errors import ExportError

    config = load_config(None, {"run_name": "full"})
    message = (
        f"Cannot write TensorBoard logs to {full_disk / 'logs'}: No space left on device. "
        "Fix the cause (disk space?)."
    )
    with pytest.raises(ExportError) as raised:
        summaries.write_hparams(full_disk / "logs", config, 8)
    assert str(raised.value) == message
    with pytest.raises(ExportError) as raised:
        summaries.file_writer(full_disk / "logs")
    assert str(raised.value) == message
