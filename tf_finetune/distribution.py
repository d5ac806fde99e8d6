"""Choosing the devices a run trains on: the `tf.distribute` strategy and device defaults."""

from __future__ import annotations

import contextlib
import logging

import tensorflow as tf

logger = logging.getLogger(__name__)

# Tensor cores multiply float16 matrices whose sizes are multiples of 8.
_GPU_PAD_MULTIPLE = 8
# Volta (7.0) is the first GPU generation with float16 tensor cores.
_MIXED_FLOAT16_CAPABILITY = (7, 0)


def select_strategy() -> tf.distribute.Strategy:
    """Returns `MirroredStrategy` over the GPUs when there are several, else the default.

    The configured batch size is per replica: a run feeds batches of
    `batch_size * strategy.num_replicas_in_sync` examples.
    """
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        strategy = tf.distribute.MirroredStrategy([gpu.name for gpu in gpus])
        logger.info("Training with MirroredStrategy over %d GPUs.", len(gpus))
        return strategy
    device = "GPU" if gpus else "CPU"
    logger.info("Training with the default strategy on one %s.", device)
    return tf.distribute.get_strategy()


def resolve_pad_multiple(setting: int | str) -> int:
    """Returns the `pad_to_multiple_of` to use: 8 on GPUs and 1 on CPUs for "auto".

    On CPUs every token of padding costs compute and batch shapes do not matter, so
    batches are padded only to their longest example.
    """
    if setting != "auto":
        return int(setting)
    return _GPU_PAD_MULTIPLE if tf.config.list_physical_devices("GPU") else 1


def resolve_precision(setting: str) -> str:
    """Returns the Keras policy name for a `mixed_precision` setting.

    "auto" is mixed_float16 when every visible GPU has float16 tensor cores, and
    float32 otherwise (CPUs gain nothing from float16 arithmetic).
    """
    if setting != "auto":
        return setting
    gpus = tf.config.list_physical_devices("GPU")
    if gpus and all(_compute_capability(gpu) >= _MIXED_FLOAT16_CAPABILITY for gpu in gpus):
        return "mixed_float16"
    return "float32"


@contextlib.contextmanager
def precision_policy(name: str):
    """Sets Keras' global precision policy for the models built inside, then restores it."""
    import tf_keras

    previous = tf_keras.mixed_precision.global_policy()
    tf_keras.mixed_precision.set_global_policy(name)
    if name != "float32":
        logger.info("Training with the %s precision policy.", name)
    try:
        yield
    finally:
        tf_keras.mixed_precision.set_global_policy(previous)


def _compute_capability(gpu) -> tuple[int, int]:
    details = tf.config.experimental.get_device_details(gpu)
    return tuple(details.get("compute_capability", (0, 0)))
