"""Choosing the devices a run trains on: the `tf.distribute` strategy and device defaults.

Batch semantics under every strategy: `batch_size` is per replica, and each step
trains on one global batch of `batch_size * num_replicas_in_sync` examples, the same
batch a single device would train on with that batch size. Keras splits each global
batch between the replicas; the optimizer takes one step per global batch, so its step
counter (and any learning-rate schedule on it) counts global steps.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re

import tensorflow as tf

from tf_finetune.errors import ConfigError, first_line
from tf_finetune.runtime import cluster

logger = logging.getLogger(__name__)

# Tensor cores multiply float16 matrices whose sizes are multiples of 8.
_GPU_PAD_MULTIPLE = 8
# Volta (7.0) is the first GPU generation with float16 tensor cores.
_MIXED_FLOAT16_CAPABILITY = (7, 0)
# Models at least this wide train in bfloat16 by default on CPUs with bfloat16 matrix
# units. MiniLM (384) trained the demo 1.3-1.4x faster at the same accuracy (seeds
# 42/1/2, docs/benchmarks.md); narrower layers' matmuls are too small to repay casting.
_BFLOAT16_MIN_HIDDEN = 256
_DEVICE = re.compile(r"(?:/?(?:device:)?)(?P<kind>cpu|gpu):(?P<index>\d+)", re.IGNORECASE)


def select_strategy(setting: str = "auto", devices: str | None = None) -> tf.distribute.Strategy:
    """Creates the `tf.distribute` strategy a run trains under.

    Call it before any other TensorFlow work in the process: splitting the CPU into
    logical devices and joining a cluster both have to happen before TensorFlow starts.

    Args:
        setting: "default" (one device), "mirrored" (one replica per device of this
            machine), "multi_worker" (one or more replicas on each worker `TF_CONFIG`
            names), or "auto": multi_worker when `TF_CONFIG` names a cluster of more
            than one worker, mirrored when `devices` names several devices or more
            than one GPU is visible, default otherwise.
        devices: Comma-separated devices, e.g. "GPU:0,GPU:1"; naming more CPUs than
            there are ("CPU:0,CPU:1") splits the CPU into logical devices.

    The configured batch size is per replica: a run feeds global batches of
    `batch_size * strategy.num_replicas_in_sync` examples.

    Raises:
        ConfigError: The devices cannot be used, or the setting does not fit them or
            `TF_CONFIG`.
    """
    task = cluster.read_tf_config()
    names = _use_devices(parse_devices(devices)) if devices else None
    if setting == "auto":
        gpus = tf.config.list_physical_devices("GPU")
        if task is not None and task.workers > 1:
            setting = "multi_worker"
        elif len(names or gpus) > 1:
            setting = "mirrored"
        else:
            setting = "default"
    if setting == "multi_worker":
        return _multi_worker(task, devices)
    if setting == "mirrored":
        if names is None:
            gpus = tf.config.list_logical_devices("GPU")
            names = [gpu.name for gpu in gpus] or ["/device:CPU:0"]
        strategy = _mirrored(tuple(names))
        logger.info("Training with MirroredStrategy over %s.", ", ".join(names))
        return strategy
    if names and len(names) > 1:
        raise ConfigError(
            f"Strategy 'default' trains on one device; devices names {len(names)} "
            f"({devices}). Use --strategy mirrored, or name one device."
        )
    if names:
        logger.info("Training with the default strategy on %s.", names[0])
        return tf.distribute.OneDeviceStrategy(names[0])
    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    logger.info("Training with the default strategy on one %s.", device)
    return tf.distribute.get_strategy()


def device_type() -> str:
    """The device type training runs on: GPU when TensorFlow sees one, else CPU."""
    return "GPU" if tf.config.list_logical_devices("GPU") else "CPU"


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Returns whether this process writes the run directory.

    Every process does, except the workers of a multi-worker cluster that are not its
    chief (see `cluster.ClusterTask.is_chief`).
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task = cluster.read_tf_config()
    return task is None or task.is_chief


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    """Returns the `strategy` config value that names `strategy`."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "multi_worker"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "mirrored"
    return "default"


def parse_devices(spec: str) -> list[str]:
    """Returns TensorFlow's device names for "GPU:0,GPU:1"-style `spec`.

    Raises:
        ConfigError: A name is not of the form "CPU:<n>" or "GPU:<n>", or repeats.
    """
    names = []
    for part in spec.split(","):
        match = _DEVICE.fullmatch(part.strip())
        if match is None:
            raise ConfigError(
                f"Config key 'devices': cannot read device {part.strip()!r}. Use names like "
                "GPU:0,GPU:1 (or CPU:0,CPU:1 to split the CPU into logical devices)."
            )
        name = f"/device:{match['kind'].upper()}:{int(match['index'])}"
        if name in names:
            raise ConfigError(f"Config key 'devices' names {part.strip()} twice.")
        names.append(name)
    return names


def _use_devices(names: list[str]) -> list[str]:
    """Checks that the GPUs of `names` exist and splits the CPU for its CPUs."""
    gpus = tf.config.list_physical_devices("GPU")
    for name in names:
        kind, index = name.split(":")[1:]
        if kind == "GPU" and int(index) >= len(gpus):
            raise ConfigError(
                f"Config key 'devices' names GPU:{index}, but this machine has "
                f"{len(gpus)} visible GPU(s)."
            )
    cpus = 1 + max((int(n.rsplit(":", 1)[1]) for n in names if ":CPU:" in n), default=0)
    if cpus > 1:
        _split_cpu(cpus)
    return names


def _split_cpu(count: int) -> None:
    """Splits the first CPU into `count` logical devices (for mirrored runs without GPUs)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu) or []
    if len(current) >= count:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    except RuntimeError:
        raise ConfigError(
            f"Cannot split the CPU into {count} logical devices: TensorFlow has already "
            "started in this process. Choose the devices before any other TensorFlow work "
            "(the tf-finetune command does)."
        ) from None


@functools.cache
def _mirrored(names: tuple[str, ...]) -> tf.distribute.Strategy:
    """One MirroredStrategy per set of devices in a process.

    A second strategy over the same devices restarts the collective instance keys of
    the first, and TensorFlow's collective executor then mixes up the ops of the two
    ("Shape mismatch in the collective instance"), as when a notebook fits twice.
    """
    return tf.distribute.MirroredStrategy(list(names))


@functools.cache
def _joined_cluster() -> tf.distribute.Strategy:
    """The process's MultiWorkerMirroredStrategy: TensorFlow allows one per process."""
    return tf.distribute.MultiWorkerMirroredStrategy()


def _multi_worker(task, devices: str | None) -> tf.distribute.Strategy:
    if task is None:
        raise ConfigError(
            "Strategy 'multi_worker' needs the TF_CONFIG environment variable to name the "
            "cluster and this worker's task (see docs/distributed.md, 'Several GPUs, several "
            "machines')."
        )
    if devices:
        raise ConfigError(
            "Config key 'devices' does not apply to strategy 'multi_worker': each worker "
            "trains on all the GPUs it sees (limit them with CUDA_VISIBLE_DEVICES)."
        )
    try:
        strategy = _joined_cluster()
    except (RuntimeError, ValueError) as error:
        raise ConfigError(
            f"Cannot join the cluster TF_CONFIG names as {task}: {first_line(error)}."
        ) from None
    logger.info(
        "Training with MultiWorkerMirroredStrategy as %s (%d replicas in all).",
        task,
        strategy.num_replicas_in_sync,
    )
    return strategy


def resolve_pad_multiple(setting: int | str) -> int:
    """Returns the `pad_to_multiple_of` to use: 8 on GPUs and 1 on CPUs for "auto".

    On CPUs every token of padding costs compute and batch shapes do not matter, so
    batches are padded only to their longest example.
    """
    if setting != "auto":
        return int(setting)
    return _GPU_PAD_MULTIPLE if tf.config.list_physical_devices("GPU") else 1


def resolve_precision(setting: str, hidden_size: int | None = None) -> str:
    """Returns the Keras policy name for a `mixed_precision` setting.

    "auto" is mixed_float16 when every visible GPU has float16 tensor cores. On CPUs it
    is mixed_bfloat16 when the CPU multiplies bfloat16 in hardware (AVX512_BF16 or AMX)
    and the model's layers are `_BFLOAT16_MIN_HIDDEN` wide or more. Otherwise float32:
    other CPUs gain nothing from 16-bit arithmetic.
    """
    from tf_finetune.runtime import environment

    if setting != "auto":
        return setting
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        if all(_compute_capability(gpu) >= _MIXED_FLOAT16_CAPABILITY for gpu in gpus):
            return "mixed_float16"
        return "float32"
    if (hidden_size or 0) >= _BFLOAT16_MIN_HIDDEN and environment.cpu_has_bfloat16_matmul():
        return "mixed_bfloat16"
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
