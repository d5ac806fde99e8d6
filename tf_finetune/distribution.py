"""Choosing the `tf.distribute` strategy a run trains under."""

from __future__ import annotations

import logging

import tensorflow as tf

logger = logging.getLogger(__name__)


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
