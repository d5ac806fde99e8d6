"""Tests of best-epoch selection, early stopping and restoring the best weights."""

import numpy as np
import pytest
import tf_keras

from tf_finetune.modeling.losses import ClassificationLoss
from tf_finetune.modeling.optimization import FusedAdam
from tf_finetune.training import best_epoch
from tf_finetune.training.checkpointing import Checkpointer


@pytest.mark.parametrize(
    ("values", "monitor", "best"),
    [
        ([0.5, 0.4, 0.45], "val_loss", 1),
        ([0.5, 0.4, 0.45], "val_macro_f1", 0),
        ([0.7, 0.9, 0.9, 0.8], "val_accuracy", 1),  # the first of equals
        ([], "val_loss", None),
    ],
)
def test_best_index_follows_the_metrics_direction(values, monitor, best):
    assert best_epoch.best_index(values, monitor) == best


def test_patience_counts_epochs_since_the_best():
    values = [0.5, 0.9, 0.7, 0.6]
    assert not best_epoch.patience_exhausted(values[:3], "val_macro_f1", 2)
    assert best_epoch.patience_exhausted(values, "val_macro_f1", 2)
    assert not best_epoch.patience_exhausted(values, "val_macro_f1", None)


class ScriptedMetric(tf_keras.callbacks.Callback):
    """Puts scripted `val_macro_f1` values into the logs and records each epoch's weights."""

    def __init__(self, values):
        super().__init__()
        self.values = values
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        logs["val_macro_f1"] = self.values[epoch]
        self.weights.append([w.copy() for w in self.model.get_weights()])


def scripted_run(tmp_path, values, patience, history=None):
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([tf_keras.layers.Dense(3)])
    model.build((None, 4))
    model.compile(optimizer=FusedAdam(0.05), loss=ClassificationLoss())
    checkpointer = Checkpointer(tmp_path / "checkpoints", model)
    keeper = best_epoch.BestEpoch(checkpointer, "val_macro_f1", patience, history or {})
    checkpointer.after_save.append(keeper.flush)
    scripted = ScriptedMetric(values)

    class EpochEnd(tf_keras.callbacks.Callback):  # stands in for the checkpoint callback
        def on_epoch_end(self, epoch, logs=None):
            keeper.flush()

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 4)).astype("float32"), rng.integers(0, 3, 16)
    fitted = model.fit(
        x, y, batch_size=4, epochs=len(values), callbacks=[scripted, keeper, EpochEnd()], verbose=0
    )
    return model, checkpointer, scripted, fitted.history


def test_early_stopping_restores_the_best_epochs_weights(tmp_path):
    values = [0.5, 0.9, 0.7, 0.6, 0.95, 0.97]
    model, checkpointer, scripted, history = scripted_run(tmp_path, values, patience=2)
    assert len(history["loss"]) == 4  # epochs 3 and 4 did not beat epoch 2: stop
    assert history["val_macro_f1"] == values[:4]
    chosen = best_epoch.selection(history, "val_macro_f1", epochs=6)
    assert (chosen.epoch, chosen.value, chosen.trained, chosen.stopped_early) == (2, 0.9, 4, True)
    assert "epoch 2 of 4" in chosen.describe() and "stopped early" in chosen.describe()
    final = model.get_weights()
    best_epoch.restore(checkpointer, chosen)
    for want, got, last in zip(scripted.weights[1], model.get_weights(), final, strict=True):
        np.testing.assert_array_equal(got, want)
        assert not np.array_equal(got, last)
    # Only the best epoch's weights are kept.
    names = {p.name.split(".")[0] for p in (tmp_path / "checkpoints").iterdir()}
    assert names == {"weights-epoch-2"}


def test_without_patience_every_epoch_trains_and_the_best_is_kept(tmp_path):
    values = [0.5, 0.9, 0.7, 0.6]
    _, _, _, history = scripted_run(tmp_path, values, patience=None)
    assert len(history["loss"]) == 4
    chosen = best_epoch.selection(history, "val_macro_f1", epochs=4)
    assert (chosen.epoch, chosen.stopped_early) == (2, False)


def test_a_resumed_run_counts_patience_from_its_history(tmp_path):
    # Epochs 1-2 were trained before (best: epoch 1); one more without progress stops.
    earlier = {"val_macro_f1": [0.8, 0.7]}
    _, _, _, history = scripted_run(tmp_path, [0.6, 0.9], patience=2, history=earlier)
    assert len(history["loss"]) == 1
