"""The optimizer of training: Adam or AdamW with fused updates, clipping, accumulation.

Keras' Adam updates a variable whose gradient is sparse (`tf.IndexedSlices`, as the
word embeddings' always is) with a chain of dense and scatter ops over the whole table:
on MiniLM one update of all variables takes 0.19 s on 2 CPU cores, about a quarter of
a training step. `FusedAdam` turns the sparse gradient into a dense one and applies
`ResourceApplyAdam`, one pass over the variable and its two slots: 0.045 s for all
variables (`benchmarks/probe_optimizer.py`). The update is the same
as Keras' Adam (rows without a gradient see a zero gradient: their moments decay and
they still move), so training follows the same recipe.

On top of Adam, `FusedAdam` has the controls of transformers' `AdamWeightDecay` and
Trainer: decoupled weight decay (AdamW) that spares LayerNorm weights and biases,
clipping by global norm, and gradient accumulation over several batches.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras

# Variables whose names hold one of these are not decayed (transformers' default).
NO_DECAY = ("LayerNorm", "layer_norm", "bias")


class FusedAdam(tf_keras.optimizers.legacy.Adam):
    """Adam applying sparse gradients densely, through the fused `ResourceApplyAdam`.

    Args:
        learning_rate: A rate or a schedule of the optimizer's step (`schedules`).
        weight_decay: Decoupled weight decay (AdamW): before each update a variable
            shrinks by `learning_rate * weight_decay` of itself. 0 is plain Adam.
        no_decay: Name fragments of the variables that are not decayed.
        clip_norm: Clip the gradients (after accumulation) to this global norm.
        accumulation_steps: Batches whose gradients are averaged into one update.
            `AccumulationGroups` tells the optimizer, before each batch, whether the
            batch closes a group; `iterations` counts updates, not batches.
    """

    def __init__(
        self,
        learning_rate=0.001,
        weight_decay: float = 0.0,
        no_decay: tuple[str, ...] = NO_DECAY,
        clip_norm: float | None = None,
        accumulation_steps: int = 1,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.weight_decay = weight_decay
        self.no_decay = tuple(no_decay)
        self.clip_norm = clip_norm
        self.accumulation_steps = accumulation_steps
        self.group_size = None  # 0: keep accumulating; n: apply the mean of n batches

    def decays(self, var) -> bool:
        """Whether weight decay applies to `var`."""
        return bool(self.weight_decay) and not any(part in var.name for part in self.no_decay)

    def _create_all_weights(self, var_list):
        super()._create_all_weights(var_list)
        if self.accumulation_steps > 1 and self.group_size is None:
            self.group_size = self.add_weight(
                "accumulation_group_size",
                shape=[],
                dtype=tf.int64,
                trainable=False,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )

    def _create_slots(self, var_list):
        super()._create_slots(var_list)
        if self.accumulation_steps > 1:
            for var in var_list:
                self.add_slot(var, "accumulated")

    def _transform_gradients(self, grads_and_vars):
        grads_and_vars = super()._transform_gradients(grads_and_vars)
        if self.accumulation_steps == 1 and self.clip_norm is None:
            return grads_and_vars
        grads, variables = zip(*grads_and_vars, strict=True)
        if self.accumulation_steps == 1:
            return list(zip(self._clipped(grads), variables, strict=True))
        grads = [tf.convert_to_tensor(g) for g in grads]  # FusedAdam densifies anyway
        size = self.group_size.read_value()

        def mean_of_group():
            count = tf.cast(size, grads[0].dtype)
            means = [
                (self.get_slot(v, "accumulated") + g) / count
                for g, v in zip(grads, variables, strict=True)
            ]
            return self._clipped(means)

        # A batch that closes a group passes the clipped mean of the group's gradients
        # to the update; any other batch passes its own gradients, to be accumulated.
        grads = tf.cond(size > 0, mean_of_group, lambda: grads)
        return list(zip(grads, variables, strict=True))

    def _clipped(self, grads):
        if self.clip_norm is None:
            return list(grads)
        return tf.clip_by_global_norm(grads, self.clip_norm)[0]

    def _distributed_apply(self, distribution, grads_and_vars, apply_state, name):
        counted = super()._distributed_apply(distribution, grads_and_vars, apply_state, name)
        if self.accumulation_steps == 1:
            return counted
        # Keras counts every call; a batch that only accumulated is not an update.
        with tf.control_dependencies([counted]):
            skipped = tf.cast(self.group_size.read_value() == 0, tf.int64)
            return self.iterations.assign_sub(skipped, read_value=False)

    def _resource_apply_dense(self, grad, var, apply_state=None):
        if self.accumulation_steps == 1:
            return self._update(grad, var, apply_state)
        accumulated = self.get_slot(var, "accumulated")

        def update():
            with tf.control_dependencies([self._update(grad, var, apply_state)]):
                return accumulated.assign(tf.zeros_like(accumulated), read_value=False)

        def accumulate():
            return accumulated.assign_add(grad, read_value=False)

        return tf.cond(self.group_size.read_value() > 0, update, accumulate)

    def _update(self, grad, var, apply_state):
        """Decays `var` (AdamW), then applies Adam's update."""
        decayed = []
        if self.decays(var):
            device, dtype = var.device, var.dtype.base_dtype
            coefficients = (apply_state or {}).get((device, dtype)) or self._fallback_apply_state(
                device, dtype
            )
            rate = coefficients["lr_t"] * tf.cast(self.weight_decay, dtype)
            decayed.append(var.assign_sub(var * rate, read_value=False))
        with tf.control_dependencies(decayed):
            return super()._resource_apply_dense(grad, var, apply_state)

    def _resource_apply_sparse(self, grad, var, indices, apply_state=None):
        rows = tf.shape(var, out_type=indices.dtype)[0]
        dense = tf.math.unsorted_segment_sum(grad, indices, rows)
        return self._resource_apply_dense(dense, var, apply_state)

    def _resource_apply_sparse_duplicate_indices(self, grad, var, indices, **kwargs):
        # unsorted_segment_sum already adds up the rows of repeated indices.
        return self._resource_apply_sparse(grad, var, indices, **kwargs)

    def get_config(self):
        return super().get_config() | {
            "weight_decay": self.weight_decay,
            "no_decay": self.no_decay,
            "clip_norm": self.clip_norm,
            "accumulation_steps": self.accumulation_steps,
        }


class AccumulationGroups(tf_keras.callbacks.Callback):
    """Tells a `FusedAdam` that accumulates whether each batch closes a group.

    Groups of `accumulation_steps` batches start at each epoch's first batch; the
    epoch's last batch closes a group early, so no gradient waits across an epoch.

    Args:
        steps_per_epoch: Batches per epoch.
    """

    def __init__(self, steps_per_epoch: int):
        super().__init__()
        self._steps = steps_per_epoch

    def on_train_batch_begin(self, batch, logs=None):
        optimizer = getattr(self.model.optimizer, "inner_optimizer", self.model.optimizer)
        size = group_size(batch, self._steps, optimizer.accumulation_steps)
        optimizer.group_size.assign(size)


def group_size(batch: int, steps_per_epoch: int, accumulation_steps: int) -> int:
    """Returns how many batches the group closed by `batch` (0-based) holds, or 0."""
    position = batch % accumulation_steps + 1
    if position == accumulation_steps or batch + 1 == steps_per_epoch:
        return position
    return 0


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
