"""Tests of FusedAdam and the float32 loss against Keras' own Adam and loss."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tf_finetune.optimization import Float32LogitsLoss, FusedAdam, create_slots


def run(optimizer, steps=4):
    rng = np.random.default_rng(0)
    table = tf.Variable(rng.normal(size=(6, 3)).astype("float32"))
    dense = tf.Variable(rng.normal(size=(3,)).astype("float32"))
    for step in range(steps):
        # Rows 1 and 4 (twice) get a gradient; the others see none.
        rows = tf.IndexedSlices(
            tf.constant(rng.normal(size=(3, 3)).astype("float32")),
            tf.constant([1, 4, 4] if step % 2 else [0, 4, 4]),
            tf.constant([6, 3]),
        )
        optimizer.apply_gradients(
            [(rows, table), (tf.constant(rng.normal(size=3).astype("float32")), dense)]
        )
    return table.numpy(), dense.numpy()


def test_fused_adam_matches_keras_adam_on_sparse_and_dense_gradients():
    expected = run(tf_keras.optimizers.Adam(learning_rate=0.1))
    fused = run(FusedAdam(learning_rate=0.1))
    for want, got in zip(expected, fused, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_create_slots_builds_moments_for_every_variable():
    optimizer = FusedAdam(learning_rate=0.1)
    variables = [tf.Variable(tf.zeros((2, 3))), tf.Variable(tf.zeros(4))]
    create_slots(optimizer, variables)
    assert {v.shape for v in optimizer.variables()[1:]} == {(2, 3), (4,)}
    assert len(optimizer.variables()) == 1 + 2 * 2  # iterations, then m and v of each
    assert int(optimizer.iterations) == 0


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_loss_on_low_precision_logits_is_float32(dtype):
    logits = tf.constant([[8.0, -8.0], [0.5, 0.25]])
    labels = tf.constant([1, 0])
    loss = Float32LogitsLoss(from_logits=True)
    reference = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    low = loss(labels, tf.cast(logits, dtype))
    assert low.dtype == tf.float32
    assert float(low) == pytest.approx(float(reference), rel=1e-3)
