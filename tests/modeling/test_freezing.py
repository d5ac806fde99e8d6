"""Tests of --freeze-base: the encoder stays as loaded, then trains after unfreezing."""

import numpy as np
import pytest
import tf_keras

from tf_finetune.errors import ModelError
from tf_finetune.modeling import freezing
from tf_finetune.modeling.models import build_model, compile_model, load_model_config


def snapshot(layer):
    return [w.numpy().copy() for w in layer.weights]


def same(before, after):
    return all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


class EpochSnapshots(tf_keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.base, self.head = [], []

    def on_epoch_end(self, epoch, logs=None):
        self.base.append(snapshot(freezing.base_layer(self.model)))
        self.head.append(snapshot(self.model.classifier))


def frozen_fit(checkpoint, epochs, unfreeze_after=None, jit_compile=False):
    path = str(checkpoint)
    model = build_model(path, load_model_config(path, ["neg", "pos"]))
    compile_model(model, 3e-3, jit_compile, freeze_base=True, weight_decay=0.1)
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 30, size=(32, 6))
    labels = (ids[:, 0] < 15).astype("int64")
    features = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    start = (snapshot(freezing.base_layer(model)), snapshot(model.classifier))
    snapshots = EpochSnapshots()
    callbacks = [snapshots]
    if unfreeze_after is not None:
        retrace = None
        if jit_compile:
            from tf_finetune.modeling.models import use_xla_train_step as retrace
        callbacks.insert(0, freezing.UnfreezeBase(unfreeze_after, retrace))
    model.fit(features, labels, batch_size=8, epochs=epochs, callbacks=callbacks, verbose=0)
    return model, start, snapshots


def test_frozen_base_is_unchanged_while_the_head_trains(tiny_checkpoint):
    model, (base, head), snapshots = frozen_fit(tiny_checkpoint, epochs=2)
    assert same(base, snapshots.base[-1])  # no update, no weight decay
    assert not same(head, snapshots.head[-1])
    # Only the head's variables were trainable, but the encoder's slots exist too.
    assert len(model.trainable_variables) == 2
    names = {slot.name for slot in model.optimizer.variables()}
    assert any("embeddings" in name for name in names)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_unfreezing_trains_the_base_from_the_given_epoch(tiny_checkpoint, jit_compile):
    model, (base, _), snapshots = frozen_fit(tiny_checkpoint, 3, 1, jit_compile)
    assert same(base, snapshots.base[0])  # epoch 1: frozen
    assert not same(snapshots.base[0], snapshots.base[1])  # epoch 2: trained
    assert not same(snapshots.base[1], snapshots.base[2])
    assert freezing.base_layer(model).trainable


def test_a_model_without_an_encoder_cannot_be_frozen():
    model = tf_keras.Sequential([tf_keras.layers.Dense(2)])
    with pytest.raises(ModelError, match="Cannot freeze the base of Sequential"):
        freezing.base_layer(model)
