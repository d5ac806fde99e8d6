"""Training the classification head alone, then the whole model (`--freeze-base`).

Freezing the pretrained encoder (`model.<base_model_prefix>`, e.g. `model.bert`) and
training only the head is transfer learning as opposed to full fine-tuning: each step
skips the encoder's backward pass and its update. `UnfreezeBase` makes the encoder
trainable again at the start of a given epoch, the usual way to let a fresh head settle
before the pretrained weights move.

The optimizer's slots exist for every variable from the start (`modeling.compile_model`),
so the training state saved in a checkpoint has the same shape frozen or not.
"""

from __future__ import annotations

import tf_keras

from tf_finetune.errors import ModelError


def base_layer(model):
    """Returns the pretrained encoder of a transformers classifier (e.g. `model.bert`).

    Raises:
        ModelError: The model has no encoder under its `base_model_prefix`.
    """
    prefix = getattr(model, "base_model_prefix", "")
    layer = getattr(model, prefix, None) if prefix else None
    if not isinstance(layer, tf_keras.layers.Layer):
        raise ModelError(
            f"Cannot freeze the base of {type(model).__name__}: it has no encoder layer "
            f"named {prefix!r}. Train without --freeze-base."
        )
    return layer


def set_base_trainable(model, trainable: bool) -> None:
    """Freezes or unfreezes the encoder; call `compile` or `retrace` afterwards."""
    base_layer(model).trainable = trainable


class UnfreezeBase(tf_keras.callbacks.Callback):
    """Makes the encoder trainable when epoch `epoch` (0-based) begins.

    Args:
        epoch: The first epoch that trains the whole model.
        retrace: Called with the model after unfreezing, to rebuild a custom train step
            that holds the trainable variables (`optimization.xla_train_step`).
    """

    def __init__(self, epoch: int, retrace=None):
        super().__init__()
        self._epoch = epoch
        self._retrace = retrace

    def on_epoch_begin(self, epoch, logs=None):
        if epoch < self._epoch or base_layer(self.model).trainable:
            return
        set_base_trainable(self.model, True)
        if self._retrace is not None:
            self._retrace(self.model)
        # Keras' fit calls `model.train_function` afresh for every batch; the new one
        # is traced with the encoder's variables among the trainable ones.
        self.model.train_function = None
        self.model.make_train_function()
