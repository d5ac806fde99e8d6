"""Transposes traced as einsums in the scoring and exported graphs: faster on CPUs.

On x86 CPUs TensorFlow rewrites every float `Transpose` into oneDNN's `_MklTranspose`,
which costs ~45 us even for a tensor of one text's attention heads (an `Add` of the
same tensor costs ~15 us). The Hugging Face encoders transpose four times per
attention layer (queries, keys, values, context), so a 6-layer model at batch 1
spent ~1 ms of its ~11 ms there. An `Einsum` that only permutes axes computes the
same tensor with Eigen's transpose, and is no slower at batch 16 or 32 either
(measured on an AVX-512 EPYC, 2 cores; see `benchmarks/inference_probes.md`).
"""

from __future__ import annotations

import contextlib
import string

import tensorflow as tf


def einsum_transpose(tensor, perm=None, conjugate=False, name="transpose"):
    """`tf.transpose` as an axis-permuting `tf.einsum` where it can be one.

    A permutation known when tracing, of a real floating tensor of known rank, becomes
    an einsum; anything else goes to `tf.transpose` unchanged.
    """
    tensor = tf.convert_to_tensor(tensor)
    rank = tensor.shape.rank
    constant = tf.get_static_value(perm) if perm is not None else None
    if constant is None or rank is None or conjugate or not tensor.dtype.is_floating:
        return _TRANSPOSE(tensor, perm=perm, conjugate=conjugate, name=name)
    axes = string.ascii_lowercase[:rank]
    permuted = "".join(axes[int(axis) % rank] for axis in constant)
    return tf.einsum(f"{axes}->{permuted}", tensor, name=name)


_TRANSPOSE = tf.transpose


@contextlib.contextmanager
def traced_as_einsums():
    """While tracing under this, calls to `tf.transpose` (as the Hugging Face models
    make them) trace as `einsum_transpose`. Meant for a single-threaded trace of the
    forward pass that scores and is exported (`forward.Forward`); the attribute is
    restored on exit."""
    tf.transpose = einsum_transpose
    try:
        yield
    finally:
        tf.transpose = _TRANSPOSE
