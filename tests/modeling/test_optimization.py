"""Tests of FusedAdam against Keras' Adam and AdamW, and of its clipping and accumulation."""

import numpy as np
import tensorflow as tf
import tf_keras

from tf_finetune.modeling.losses import ClassificationLoss
from tf_finetune.modeling.optimization import (
    AccumulationGroups,
    FusedAdam,
    create_slots,
    group_size,
)


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


def named_variables():
    rng = np.random.default_rng(1)
    return {
        name: tf.Variable(rng.normal(size=shape).astype("float32"), name=name)
        for name, shape in [
            ("dense/kernel", (3, 2)),
            ("dense/bias", (2,)),
            ("LayerNorm/gamma", (2,)),
        ]
    }


def test_adamw_decays_weights_but_not_layer_norm_or_biases():
    variables = named_variables()
    before = {name: v.numpy() for name, v in variables.items()}
    optimizer = FusedAdam(learning_rate=0.1, weight_decay=0.5)
    # Zero gradients: Adam's step is 0, so only the decay moves anything.
    optimizer.apply_gradients([(tf.zeros_like(v), v) for v in variables.values()])
    np.testing.assert_allclose(
        variables["dense/kernel"].numpy(), before["dense/kernel"] * (1 - 0.1 * 0.5), rtol=1e-6
    )
    np.testing.assert_array_equal(variables["dense/bias"].numpy(), before["dense/bias"])
    np.testing.assert_array_equal(variables["LayerNorm/gamma"].numpy(), before["LayerNorm/gamma"])


def test_adamw_matches_keras_adamw_on_the_decayed_variables():
    rng = np.random.default_rng(2)
    start = rng.normal(size=(4, 3)).astype("float32")
    grads = [rng.normal(size=(4, 3)).astype("float32") for _ in range(5)]
    results = []
    for optimizer in (
        tf_keras.optimizers.AdamW(learning_rate=0.05, weight_decay=0.1, epsilon=1e-7),
        FusedAdam(learning_rate=0.05, weight_decay=0.1),
    ):
        variable = tf.Variable(start, name="kernel")
        for grad in grads:
            optimizer.apply_gradients([(tf.constant(grad), variable)])
        results.append(variable.numpy())
    np.testing.assert_allclose(results[1], results[0], rtol=1e-5, atol=1e-6)


def test_clipping_applies_adam_to_gradients_scaled_to_the_global_norm():
    base = [tf.constant([[3.0, 0.0]]), tf.constant([4.0])]  # global norm 5
    scales = [1.0, 0.1, 2.0]  # norms 5, 0.5 and 10: clipped to 1, kept, clipped to 1
    clipped_by_hand = [1 / 5, 0.1, 2 / 10]

    def train(optimizer, factors):
        kernel, bias = tf.Variable([[1.0, 1.0]]), tf.Variable([1.0])
        for factor in factors:
            optimizer.apply_gradients(zip([g * factor for g in base], [kernel, bias], strict=True))
        return np.concatenate([kernel.numpy().ravel(), bias.numpy()])

    clipped = train(FusedAdam(0.1, clip_norm=1.0), scales)
    np.testing.assert_allclose(clipped, train(FusedAdam(0.1), clipped_by_hand), rtol=1e-6)
    # Adam is nearly blind to a constant scale, not to scales that change per step.
    assert np.abs(clipped - train(FusedAdam(0.1), scales)).max() > 1e-3


def test_group_sizes_restart_each_epoch_and_close_at_its_end():
    sizes = [group_size(batch, 10, 4) for batch in range(10)]
    assert sizes == [0, 0, 0, 4, 0, 0, 0, 4, 0, 2]
    assert [group_size(batch, 3, 1) for batch in range(3)] == [1, 1, 1]


def test_accumulating_two_batches_applies_their_mean_once():
    rng = np.random.default_rng(3)
    start = rng.normal(size=(5, 2)).astype("float32")
    g1, g2 = (tf.constant(rng.normal(size=(5, 2)).astype("float32")) for _ in range(2))
    accumulating = FusedAdam(0.1, accumulation_steps=2, clip_norm=0.5, weight_decay=0.01)
    single = FusedAdam(0.1, clip_norm=0.5, weight_decay=0.01)
    a, b = tf.Variable(start, name="kernel"), tf.Variable(start, name="kernel")
    create_slots(accumulating, [a])
    accumulating.group_size.assign(0)
    accumulating.apply_gradients([(g1, a)])
    np.testing.assert_array_equal(a.numpy(), start)  # only accumulated
    assert int(accumulating.iterations) == 0
    accumulating.group_size.assign(2)
    accumulating.apply_gradients([(g2, a)])
    single.apply_gradients([((g1 + g2) / 2, b)])
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)
    assert int(accumulating.iterations) == 1
    assert not accumulating.get_slot(a, "accumulated").numpy().any()


def small_model(optimizer):
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential(
        [tf_keras.layers.Dense(8, activation="tanh"), tf_keras.layers.Dense(3)]
    )
    model.build((None, 4))
    model.compile(optimizer=optimizer, loss=ClassificationLoss())
    create_slots(model.optimizer, model.trainable_variables)
    return model


def test_fit_accumulating_k_batches_equals_one_k_times_larger_batch():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(48, 4)).astype("float32")
    y = rng.integers(0, 3, size=48)
    large = small_model(FusedAdam(0.01))
    large.fit(x, y, batch_size=12, epochs=2, shuffle=False, verbose=0)
    accumulated = small_model(FusedAdam(0.01, accumulation_steps=3))
    accumulated.fit(
        x,
        y,
        batch_size=4,
        epochs=2,
        shuffle=False,
        verbose=0,
        callbacks=[AccumulationGroups(steps_per_epoch=12)],
    )
    assert int(accumulated.optimizer.iterations) == int(large.optimizer.iterations) == 8
    moved = max(
        np.abs(w - v).max()
        for w, v in zip(large.get_weights(), small_model(FusedAdam()).get_weights(), strict=True)
    )
    for want, got in zip(large.get_weights(), accumulated.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert moved > 1e-2  # training moved the weights far more than the tolerance
