"""Tests of the einsum transposes the model is traced with for scoring and the export."""

import numpy as np
import pytest
import tensorflow as tf

from tf_finetune.modeling import transposes


@pytest.mark.parametrize(
    ("shape", "perm"),
    [((2, 3, 4, 5), [0, 2, 1, 3]), ((2, 3, 4, 5), (3, 1, 0, 2)), ((3, 4), [1, 0]),
     ((2, 3, 4), [-1, 0, 1])],
)  # fmt: skip
def test_einsum_transpose_equals_transpose(shape, perm):
    tensor = tf.random.normal(shape)
    traced = tf.function(lambda x: transposes.einsum_transpose(x, perm=perm))
    graph = traced.get_concrete_function(tensor).graph.as_graph_def()
    assert "Einsum" in {node.op for node in graph.node}
    np.testing.assert_array_equal(traced(tensor).numpy(), tf.transpose(tensor, perm=perm).numpy())


def test_what_an_einsum_cannot_do_stays_a_transpose():
    ints = tf.reshape(tf.range(6), [2, 3])
    np.testing.assert_array_equal(transposes.einsum_transpose(ints, [1, 0]), tf.transpose(ints))
    dynamic = tf.function(lambda x, p: transposes.einsum_transpose(x, perm=p))
    graph = dynamic.get_concrete_function(
        tf.TensorSpec([2, 3]), tf.TensorSpec([2], tf.int32)
    ).graph.as_graph_def()
    assert "Transpose" in {node.op for node in graph.node}
    np.testing.assert_array_equal(
        transposes.einsum_transpose(tf.ones([2, 3])).shape, [3, 2]
    )  # no perm: all axes reversed


def test_the_patch_is_undone_after_tracing_even_on_error():
    with pytest.raises(RuntimeError), transposes.traced_as_einsums():
        assert tf.transpose is transposes.einsum_transpose
        raise RuntimeError
    assert tf.transpose is not transposes.einsum_transpose
