"""End-to-end tests of the training controls: schedule, AdamW, accumulation, freezing,
class weights, label smoothing, best-epoch export and determinism."""

import csv

import numpy as np
import pytest
import tensorflow as tf
import yaml
from sklearn.metrics import f1_score

from tf_finetune.config import load_config
from tf_finetune.modeling import schedules
from tf_finetune.pipeline import fit
from tf_finetune.training import best_epoch

CONTROLS = {
    "optimizer": "adamw",
    "lr_schedule": "linear",
    "warmup_ratio": 0.125,
    "clip_norm": 1.0,
    "gradient_accumulation_steps": 2,
    "class_weights": "balanced",
    "label_smoothing": 0.05,
    "freeze_base": True,
    "unfreeze_after": 1,
    "restore_best": True,
    "log_steps": 4,
    "epochs": 6,
    "learning_rate": 5e-3,
}


@pytest.fixture(scope="module")
def run(tiny_checkpoint, tmp_path_factory):
    """A tiny fit with every control on: 16 batches of 8 per epoch, 8 updates.

    The tiny task sits on a plateau for a few epochs, and the best epoch is picked
    without early stopping, which would stop on that plateau (see test_best_epoch).
    """
    from conftest import tiny_fit_options

    options = tiny_fit_options(tiny_checkpoint, tmp_path_factory.mktemp("controls"))
    return fit(load_config(overrides=options | CONTROLS))


def test_the_run_learns_with_every_control_on(run):
    assert run.report["accuracy"] >= 0.8
    assert run.stats["optimizer_steps"] == 6 * 8  # 16 batches, 2 per update


def step_scalars(log_dir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir / "train"), size_guidance={"tensors": 0})
    events.Reload()
    return [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in events.Tensors(tag)]


def test_learning_rate_follows_warmup_and_linear_decay_in_optimizer_steps(run):
    # 6 epochs x 8 updates = 48; warmup 0.125 x 48 = 6 updates.
    schedule = schedules.WarmupLinear(5e-3, warmup_steps=6, total_steps=48)
    points = step_scalars(run.log_dir, "step_learning_rate")
    assert [step for step, _ in points][:4] == [4, 8, 12, 16]
    # After batch s, s / 2 updates are done; the next one uses the rate at that step.
    want = [float(schedule(step // 2)) for step, _ in points]
    assert [rate for _, rate in points] == pytest.approx(want, rel=1e-5)
    assert want[:4] == pytest.approx([5e-3 / 3, 5e-3 * 2 / 3, 5e-3, 5e-3 * 40 / 42])


def test_the_export_is_the_best_epochs_model(run):
    values = run.history["val_macro_f1"]
    best = best_epoch.best_index(values, "val_macro_f1")
    assert run.report["model_epoch"]["epoch"] == best + 1
    assert f"Model of epoch {best + 1} of {len(values)} trained" in run.report_text
    from tf_finetune.serving.prediction import ExportedModel

    model = ExportedModel(run.saved_model_dir)
    with open(run.run_dir.parent.parent / "validation.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    scores = model.predict([row["text"] for row in rows])
    predicted = [model.label_names[i] for i in scores.argmax(axis=1)]
    exported_f1 = f1_score([row["label"] for row in rows], predicted, average="macro")
    assert exported_f1 == pytest.approx(values[best], abs=1e-6)


def test_resolved_config_records_the_implied_values(run):
    saved = yaml.safe_load((run.run_dir / "fit_config.yaml").read_text(encoding="utf-8"))
    assert saved["weight_decay"] == 0.01  # AdamW's default
    assert saved["restore_best"] is True
    assert saved["class_weights"] == "balanced"


def test_deterministic_runs_with_one_seed_give_the_same_metrics(tiny_checkpoint, tmp_path):
    from conftest import tiny_fit_options
    from tensorflow.python.framework import config as tf_config

    options = tiny_fit_options(tiny_checkpoint, tmp_path) | {"epochs": 2, "deterministic": True}
    assert not tf_config.is_op_determinism_enabled()
    first = fit(load_config(overrides=options | {"run_name": "first"}))
    # Op determinism is scoped to the run: the process is left as it was.
    assert not tf_config.is_op_determinism_enabled()
    second = fit(load_config(overrides=options | {"run_name": "second"}))
    # Another seed differs from the first epoch on; one epoch shows it.
    other_seed = fit(load_config(overrides=options | {"run_name": "third", "seed": 7, "epochs": 1}))
    for key in ("loss", "accuracy", "val_loss", "val_macro_f1"):
        assert first.history[key] == second.history[key]
    assert first.history["loss"][0] != other_seed.history["loss"][0]
    predictions = [
        np.loadtxt(r.run_dir / "predictions.csv", delimiter=",", skiprows=1, usecols=(3, 4))
        for r in (first, second)
    ]
    np.testing.assert_array_equal(*predictions)


def test_a_run_that_stopped_early_is_finished_on_resume():
    from tf_finetune.pipeline import _finished

    config = load_config(overrides={"epochs": 5, "early_stopping_patience": 2})
    assert _finished(config, 3, {"val_macro_f1": [0.9, 0.8, 0.7]})  # stopped after epoch 3
    assert not _finished(config, 3, {"val_macro_f1": [0.7, 0.8, 0.9]})
    assert _finished(load_config(overrides={"epochs": 3}), 3, {})
