"""End-to-end tests of `fit`: train, report, export, reload in a fresh process."""

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import yaml
from sklearn.metrics import classification_report, confusion_matrix

from tf_finetune.config import load_config
from tf_finetune.errors import ConfigError
from tf_finetune.pipeline import fit


@pytest.fixture(scope="session")
def run(trained_run):
    """The session's shared trained run (see conftest): read it, never write into it."""
    return trained_run


def test_fit_learns_the_task(run):
    # Chance is 0.5; the label shows in one sentiment word.
    assert run.report["accuracy"] >= 0.8
    assert run.history["loss"][-1] < run.history["loss"][0]
    assert len(run.history["val_accuracy"]) == 4


def test_run_directory_holds_every_artefact(run):
    names = {p.name for p in run.run_dir.iterdir()}
    assert {
        "1",
        "config.json",
        "tf_model.h5",
        "tokenizer.json",
        "vocab.txt",
        "labels.txt",
        "fit_config.yaml",
        "report.json",
        "report.txt",
        "predictions.csv",
        "training_stats.json",
        "logs",
    } <= names
    assert (run.run_dir / "labels.txt").read_text().split() == ["neg", "pos"]
    assert run.saved_model_dir == run.run_dir / "1"
    assert (run.saved_model_dir / "saved_model.pb").is_file()
    assert not [p for p in run.run_dir.iterdir() if p.name.startswith(".tmp")]
    assert list((run.log_dir / "train").glob("events.out.tfevents.*"))
    assert list((run.log_dir / "validation").glob("events.out.tfevents.*"))


def test_tensorboard_logs_hold_the_epoch_metrics(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logged = {}
    for split in ("train", "validation"):
        events = EventAccumulator(str(run.log_dir / split), size_guidance={"tensors": 0})
        events.Reload()
        logged[split] = {
            tag: [float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)]
            for tag in events.Tags()["tensors"]
            if tag.startswith("epoch_")
        }
    np.testing.assert_allclose(logged["train"]["epoch_loss"], run.history["loss"], rtol=1e-5)
    np.testing.assert_allclose(
        logged["validation"]["epoch_accuracy"], run.history["val_accuracy"], rtol=1e-5
    )
    for key in ("samples_per_second", "padding_share", "rss_mib"):
        np.testing.assert_allclose(logged["train"][f"epoch_{key}"], run.history[key], rtol=1e-5)


def test_tensorboard_holds_loss_learning_rate_and_speed_every_20_steps(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run.log_dir / "train"), size_guidance={"tensors": 0})
    events.Reload()
    points = {
        tag: [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in events.Tensors(tag)]
        for tag in ("step_loss", "step_learning_rate", "step_samples_per_second")
    }
    assert [step for step, _ in points["step_loss"]] == [20, 40, 60]  # of 64 steps
    assert [rate for _, rate in points["step_learning_rate"]] == pytest.approx([3e-3] * 3)
    assert all(speed > 0 for _, speed in points["step_samples_per_second"])
    assert all(np.isfinite(loss) for _, loss in points["step_loss"])


def test_tensorboard_holds_a_full_evaluation_of_every_epoch(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run.log_dir / "validation"), size_guidance={"tensors": 0})
    events.Reload()
    tags = events.Tags()["tensors"]
    for tag in ("eval_macro_f1", "eval_weighted_f1", "eval_f1/neg", "eval_f1/pos"):
        assert [e.step for e in events.Tensors(tag)] == [0, 1, 2, 3]
    # scikit-learn's accuracy on the epoch's predictions is the accuracy Keras validated.
    accuracy = [float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors("eval_accuracy")]
    np.testing.assert_allclose(accuracy, run.history["val_accuracy"], rtol=1e-6)
    assert {"confusion_matrix", "misclassified"} <= set(tags)
    assert len(events.Tensors("confusion_matrix")) == 4


def test_the_run_directory_holds_pictures_the_report_points_to(run):
    curves = tf.io.decode_png((run.run_dir / "training_curves.png").read_bytes())
    matrix = tf.io.decode_png((run.run_dir / "confusion_matrix.png").read_bytes())
    assert curves.shape[:2] == (400, 1000)  # loss and accuracy panels, 10 x 4 inches
    assert matrix.shape[:2] == (400, 400)
    text = (run.run_dir / "report.txt").read_text()
    assert "confusion_matrix.png (test split) and training_curves.png" in text
    assert run.report_text == text


def test_hparams_dashboard_gets_the_runs_settings(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(run.log_dir), size_guidance={"tensors": 0})
    events.Reload()
    content = events.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    session = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    assert session.hparams["learning_rate"].number_value == pytest.approx(3e-3)
    assert session.hparams["global_batch"].number_value == 8
    assert session.hparams["padding"].string_value == "grouped"
    assert session.group_name == "tiny"


def test_training_stats_account_for_the_run(run):
    stats = json.loads((run.run_dir / "training_stats.json").read_text())
    assert stats == run.stats  # JSON keeps Python floats exactly
    assert stats["epochs"] == 4
    assert stats["traced_train_functions"] == 1
    # 128 rows, 4 epochs: samples/s is over training steps only.
    assert stats["samples_per_second"] == pytest.approx(4 * 128 / stats["train_seconds"])
    assert 0 <= stats["padding_share"] < 0.2  # grouped batches of similar length
    assert [e["val_accuracy"] for e in stats["per_epoch"]] == run.history["val_accuracy"]
    # Warm-up left out: the steady rate is over the steps after the first, windowed.
    assert stats["steady_low"] <= stats["steady_samples_per_second"] <= stats["steady_high"]
    phases = stats["phase_seconds"]
    assert [phase for phase in phases if phase != "start-up"] == [
        "load", "tokenize", "plan", "build", "train", "compile", "validation", "report",
        "export",
    ]  # fmt: skip
    assert phases["train"] + phases["compile"] == pytest.approx(stats["train_seconds"])
    assert phases["compile"] == pytest.approx(stats["tracing_seconds"])
    assert all(seconds >= 0 for seconds in phases.values()) and phases["export"] > 0
    # Efficiency: the tiny model's work per token against this machine's probed peak.
    assert stats["flops_per_token"] > 0 and stats["matmul_peak_gflops"] > 1
    assert stats["peak_share"] == pytest.approx(
        stats["achieved_gflops"] / stats["matmul_peak_gflops"]
    )
    assert 0 < stats["peak_share"] < 1


def test_resolved_config_reloads_as_the_same_run(run):
    written = yaml.safe_load((run.run_dir / "fit_config.yaml").read_text())
    assert written["epochs"] == 4
    # 'auto' is resolved to the length the run used.
    assert isinstance(written["max_length"], int) and 8 <= written["max_length"] <= 16
    again = load_config(run.run_dir / "fit_config.yaml")
    assert again.to_dict() == written


def test_hugging_face_config_carries_the_label_names(run):
    hf_config = json.loads((run.run_dir / "config.json").read_text())
    assert hf_config["id2label"] == {"0": "neg", "1": "pos"}
    assert hf_config["label2id"] == {"neg": 0, "pos": 1}


def test_report_agrees_with_scikit_learn_on_saved_predictions(run):
    with open(run.run_dir / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 32
    y_true = [r["label"] for r in rows]
    y_pred = [r["predicted"] for r in rows]
    expected = classification_report(y_true, y_pred, output_dict=True, zero_division=0)
    report = json.loads((run.run_dir / "report.json").read_text())
    for key in ("neg", "pos", "macro avg", "weighted avg"):
        for metric in ("precision", "recall", "f1-score", "support"):
            assert report[key][metric] == pytest.approx(expected[key][metric])
    assert report["accuracy"] == pytest.approx(expected["accuracy"])
    assert report["confusion_matrix"] == confusion_matrix(y_true, y_pred).tolist()
    assert report["labels"] == ["neg", "pos"]
    # The predicted label is the most probable class of the row.
    for row in rows:
        assert row["predicted"] == max(("neg", "pos"), key=lambda n: float(row[f"p_{n}"]))
    text = (run.run_dir / "report.txt").read_text()
    assert "macro avg" in text and "Confusion matrix" in text
    assert text == run.report_text


def test_saved_model_serves_raw_text_in_a_fresh_process_with_tensorflow_alone(run):
    """A fresh interpreter with TensorFlow alone reproduces the saved probabilities."""
    with open(run.run_dir / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    texts = [r["text"] for r in rows]
    expected = np.array([[float(r["p_neg"]), float(r["p_pos"])] for r in rows])
    script = textwrap.dedent(
        """
        import json, sys
        import tensorflow as tf
        texts = json.load(sys.stdin)
        loaded = tf.saved_model.load(sys.argv[1])
        outputs = loaded.signatures["serving_default"](text=tf.constant(texts))
        leaked = [m for m in ("transformers", "tf_finetune", "tf_keras", "tensorflow_text")
                  if m in sys.modules]
        print(json.dumps({
            "scores": outputs["scores"].numpy().tolist(),
            "label": [n.decode() for n in outputs["label"].numpy()],
            "labels": [n.decode() for n in loaded.label_names.numpy()],
            "leaked": leaked,
        }))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(run.saved_model_dir)],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
        cwd=run.run_dir,
        env=_fresh_environment(),
    )
    served = json.loads(done.stdout.strip().splitlines()[-1])
    assert served["leaked"] == []
    assert served["labels"] == ["neg", "pos"]
    # predictions.csv holds 6 decimals.
    np.testing.assert_allclose(served["scores"], expected, atol=2e-6)
    assert served["label"] == [r["predicted"] for r in rows]


def test_saved_model_cli_shows_and_runs_the_export(run):
    cli = str(Path(sys.executable).parent / "saved_model_cli")
    shown = subprocess.run(
        [cli, "show", "--all", "--dir", str(run.saved_model_dir)],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
        env=_fresh_environment(),
    ).stdout
    assert "signature_def['serving_default']" in shown
    assert "signature_def['token_ids']" in shown
    assert "inputs['text'] tensor_info:" in shown
    ran = subprocess.run(
        [
            cli,
            "run",
            "--dir",
            str(run.saved_model_dir),
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--input_exprs",
            'text=["a great film"]',
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=_fresh_environment(),
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert "Result for output key label:" in ran.stdout
    assert "Result for output key scores:" in ran.stdout


def _fresh_environment():
    # transformers sets TF_USE_LEGACY_KERAS in this process; a server would not have it.
    return {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}


def test_run_directory_is_never_reused(run):
    config = load_config(run.run_dir / "fit_config.yaml")
    with pytest.raises(ConfigError, match="already exists and is not empty"):
        fit(config)


def test_run_directory_can_continue_training(run, tmp_path):
    """The run directory is a checkpoint: --model <run dir> trains on from it."""
    config = load_config(
        run.run_dir / "fit_config.yaml",
        {
            "model": str(run.run_dir),
            "epochs": 1,
            "learning_rate": 1e-9,
            "output_dir": str(tmp_path),
            "run_name": "again",
        },
    )
    again = fit(config)
    # With a negligible learning rate the continued model predicts as the first did.
    assert again.report["accuracy"] == pytest.approx(run.report["accuracy"])


def test_mixed_precision_trains_and_reports_and_exports_in_float32(fit_options, monkeypatch):
    """On one CPU, validation scores a float32 copy, and the report (on validation,
    without a test file) reuses the chosen epoch's scores instead of predicting again.

    The third of four epochs is made the best, so the copy, which scored the last
    epoch, must be given the restored weights before the report and the export use it.
    """
    import tf_keras
    from transformers import TFAutoModelForSequenceClassification

    from tf_finetune.evaluation import scoring
    from tf_finetune.modeling import models
    from tf_finetune.training import best_epoch

    def third(values, monitor):
        return min(len(values) - 1, 2) if values else None

    monkeypatch.setattr(best_epoch, "best_index", third)

    scored = []
    predict_logits = scoring.predict_logits

    def counted(model, batches):
        scored.append(model.compute_dtype)
        return predict_logits(model, batches)

    monkeypatch.setattr(scoring, "predict_logits", counted)
    in_float32, replaced = models.activations_in_float32, []
    monkeypatch.setattr(
        models, "activations_in_float32", lambda model: replaced.append(in_float32(model))
    )
    options = dict(fit_options, mixed_precision="mixed_bfloat16", test_file=None)
    run = fit(load_config(overrides=dict(options, restore_best=True)))
    assert replaced == [2]  # on a CPU the tiny BERT's two GELUs compute in float32
    assert tf_keras.mixed_precision.global_policy().name == "float32"  # restored
    assert np.isfinite(run.history["loss"]).all()
    assert run.eval_split == "validation" and run.report["accuracy"] >= 0.8
    assert scored == ["float32"] * options["epochs"]  # once an epoch, none for the report
    assert run.report["model_epoch"]["epoch"] == 3
    assert run.report["accuracy"] == pytest.approx(run.history["val_accuracy"][2])
    written = yaml.safe_load((run.run_dir / "fit_config.yaml").read_text())
    assert written["mixed_precision"] == "mixed_bfloat16"
    # The export computes in float32: its logits are the written weights' in float32,
    # closer than bfloat16's 2-3 significant digits allow.
    loaded = tf.saved_model.load(str(run.saved_model_dir))
    ids = {
        "input_ids": tf.constant([[2, 5, 7, 9, 3], [2, 9, 3, 0, 0]], tf.int32),
        "attention_mask": tf.constant([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], tf.int32),
        "token_type_ids": tf.zeros([2, 5], tf.int32),
    }
    served = loaded.signatures["token_ids"](**ids)["logits"].numpy()
    reference = TFAutoModelForSequenceClassification.from_pretrained(str(run.run_dir))
    expected = reference(ids, training=False).logits.numpy()
    np.testing.assert_allclose(served, expected, atol=1e-5)
    scores = loaded.signatures["serving_default"](text=tf.constant(["a good film"]))["scores"]
    assert scores.dtype == tf.float32
    # The report scored the same float32 model: its predictions are the export's.
    with (run.run_dir / "predictions.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[:8]
    texts = tf.constant([row["text"] for row in rows])
    exported = loaded.signatures["serving_default"](text=texts)["scores"].numpy()
    reported = [[float(row["p_neg"]), float(row["p_pos"])] for row in rows]
    np.testing.assert_allclose(reported, exported, atol=1e-4)


@pytest.mark.parametrize("padding", ["max_length", "dynamic"])
def test_the_other_padding_modes_train_every_epoch(fit_options, padding):
    run = fit(load_config(overrides=dict(fit_options, padding=padding, epochs=2)))
    assert len(run.history["loss"]) == 2
    assert run.stats["traced_train_functions"] == 1
    share = run.stats["padding_share"]
    if padding == "max_length":
        # Every example is padded to the longest training text: a fixed share.
        assert run.history["padding_share"][0] == run.history["padding_share"][1] == share
    assert share > 0.05  # random batches of mixed lengths do pad
    assert run.history["loss"][1] < run.history["loss"][0]  # the second epoch learned too


def test_without_a_test_split_the_report_scores_validation(fit_options):
    options = {k: v for k, v in fit_options.items() if k != "test_file"}
    run = fit(load_config(overrides=dict(options, epochs=2)))
    assert run.eval_split == "validation"
    # The report's predictions are the ones Keras validated after the last epoch.
    assert run.report["accuracy"] == pytest.approx(run.history["val_accuracy"][-1], abs=1e-6)
    rows = list(csv.DictReader((run.run_dir / "predictions.csv").open(encoding="utf-8")))
    assert len(rows) == sum(run.report[name]["support"] for name in ("neg", "pos"))


def test_a_multi_worker_run_needs_a_run_name(fit_options, monkeypatch):
    from tf_finetune.runtime import distribution

    # Every worker must name the same directory; a default name has a start time in it.
    monkeypatch.setattr(distribution, "strategy_name", lambda strategy: "multi_worker")
    options = dict(fit_options, run_name=None)
    with pytest.raises(ConfigError, match="A multi-worker run needs --run-name"):
        fit(load_config(overrides=options))
    assert not Path(options["output_dir"]).exists()
