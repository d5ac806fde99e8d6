"""The optimizer and loss of training: Adam with fused updates, a float32 loss.

Keras' Adam updates a variable whose gradient is sparse (`tf.IndexedSlices`, as the
word embeddings' always is) with a chain of dense and scatter ops over the whole table:
on MiniLM one update of all variables takes 0.19 s on 2 CPU cores, about a quarter of
a training step. `FusedAdam` turns the sparse gradient into a dense one and applies
`ResourceApplyAdam`, one pass over the variable and its two slots: 0.045 s for all
variables (`benchmarks/probe_optimizer.py`). The update is the same
as Keras' Adam (rows without a gradient see a zero gradient: their moments decay and
they still move), so training follows the same recipe.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras


class FusedAdam(tf_keras.optimizers.legacy.Adam):
    """Adam applying sparse gradients densely, through the fused `ResourceApplyAdam`."""

    def _resource_apply_sparse(self, grad, var, indices, apply_state=None):
        rows = tf.shape(var, out_type=indices.dtype)[0]
        dense = tf.math.unsorted_segment_sum(grad, indices, rows)
        return self._resource_apply_dense(dense, var, apply_state)

    def _resource_apply_sparse_duplicate_indices(self, grad, var, indices, **kwargs):
        # unsorted_segment_sum already adds up the rows of repeated indices.
        return self._resource_apply_sparse(grad, var, indices, **kwargs)


class Float32LogitsLoss(tf_keras.losses.SparseCategoricalCrossentropy):
    """Sparse categorical cross-entropy computed in float32, whatever the logits' type.

    Under a mixed precision policy the classifier's logits are float16 or bfloat16;
    the softmax and log of the loss stay in float32.
    """

    def call(self, y_true, y_pred):
        return super().call(y_true, tf.cast(y_pred, tf.float32))


def create_slots(optimizer, variables) -> None:
    """Creates the optimizer's step counter and moment slots for `variables` now.

    Left to the first training step, the slots are created inside the traced train
    function, which makes TensorFlow trace it twice (about 10 s on MiniLM). Call this
    under the strategy scope the model was built in.
    """
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # unwrap loss scaling
    inner._create_all_weights(variables)


def xla_train_step(model):
    """Returns a Keras train step whose forward and backward pass is compiled by XLA.

    Keras' `compile(jit_compile=True)` compiles each replica's whole step, the
    gradients' all-reduce included. XLA has no kernel for TensorFlow's collective or
    NCCL all-reduce, so that fails under any strategy with more than one replica
    (tensorflow/tensorflow#45940, keras-team/tf-keras#99). Here XLA compiles the model,
    the loss and the gradients; the all-reduce, loss scaling's bookkeeping and the Adam
    update run as ordinary TensorFlow ops, as in Keras' own step.

    Set it as `model.train_step` after `compile`. Batches are `(features, labels)`.
    """
    optimizer = model.optimizer
    scaled = isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer)

    @tf.function(jit_compile=True, reduce_retracing=True)
    def gradients_of(features, labels):
        with tf.GradientTape() as tape:
            logits = model(features, training=True).logits
            loss = model.compiled_loss(labels, logits, regularization_losses=model.losses)
            target = optimizer.get_scaled_loss(loss) if scaled else loss
        gradients = tape.gradient(target, model.trainable_variables)
        # Dense gradients have the same shape on every replica, whatever its batch, so
        # the all-reduce lines them up (sparse embedding gradients from XLA did not:
        # "Shape mismatch in the collective instance"). FusedAdam densifies them anyway.
        return logits, [tf.convert_to_tensor(g) for g in gradients]

    def train_step(data):
        features, labels = data
        logits, gradients = gradients_of(features, labels)
        if scaled:
            gradients = optimizer.get_unscaled_gradients(gradients)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        model.compiled_metrics.update_state(labels, logits)
        return {metric.name: metric.result() for metric in model.metrics}

    return train_step
