"""The learning rate over training: constant, or linear warmup then linear decay.

`WarmupLinear` is transformers' `get_scheduler("linear")` (PyTorch) written as a Keras
schedule of the optimizer's step: the rate climbs from 0 to its peak over the warmup
steps, then falls linearly to 0 at the last step. With `decay=False` it stays at the
peak after warmup (transformers' "constant_with_warmup"). Steps count optimizer
updates: with gradient accumulation, one update per accumulated group of batches.
"""

from __future__ import annotations

import math

import tensorflow as tf
import tf_keras

from tf_finetune.errors import ConfigError


class WarmupLinear(tf_keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `peak`, then linear decay to 0 at `total_steps`.

    Args:
        peak: The rate reached at the end of warmup.
        warmup_steps: Optimizer steps of warmup; 0 starts at the peak.
        total_steps: Optimizer steps of the whole run.
        decay: Decay linearly after warmup; False holds the peak.
    """

    def __init__(self, peak: float, warmup_steps: int, total_steps: int, decay: bool = True):
        self.peak = peak
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.decay = decay

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = float(self.warmup_steps)
        warming = self.peak * step / max(1.0, warmup)
        if not self.decay:
            return tf.where(step < warmup, warming, self.peak)
        remaining = (float(self.total_steps) - step) / max(1.0, self.total_steps - warmup)
        return tf.where(step < warmup, warming, self.peak * tf.maximum(0.0, remaining))

    def get_config(self):
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "decay": self.decay,
        }


def optimizer_steps(batches_per_epoch: int, epochs: int, accumulation_steps: int) -> int:
    """Returns the optimizer updates of a run: one per accumulated group of batches.

    A group never spans two epochs, so an epoch's last group may be shorter.
    """
    return epochs * math.ceil(batches_per_epoch / accumulation_steps)


def warmup_steps(config, total_steps: int) -> int:
    """Returns the warmup steps `config` asks for, as a number of optimizer steps.

    Raises:
        ConfigError: The warmup is longer than the run.
    """
    steps = config.warmup_steps or round(config.warmup_ratio * total_steps)
    if steps > total_steps:
        raise ConfigError(
            f"Config key 'warmup_steps' ({steps}) is more than the run's {total_steps} "
            "optimizer steps. Lower it, or train for more epochs."
        )
    return steps


def learning_rate(config, total_steps: int):
    """Returns the rate or schedule for the optimizer: a float when it is constant."""
    warmup = warmup_steps(config, total_steps)
    if config.lr_schedule == "constant" and not warmup:
        return config.learning_rate
    return WarmupLinear(
        config.learning_rate, warmup, total_steps, decay=config.lr_schedule == "linear"
    )
