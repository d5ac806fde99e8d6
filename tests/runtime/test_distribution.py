"""Tests of strategy selection and device defaults."""

import json

import pytest
import tensorflow as tf

from tf_finetune.errors import ConfigError
from tf_finetune.runtime import distribution

TWO_WORKERS = {"cluster": {"worker": ["localhost:2001", "localhost:2002"]}}


@pytest.fixture(autouse=True)
def no_cluster(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    # Strategies are kept per process; fakes must not outlive their test.
    for cached in (distribution._mirrored, distribution._joined_cluster):
        cached.cache_clear()
    yield
    for cached in (distribution._mirrored, distribution._joined_cluster):
        cached.cache_clear()


def test_one_device_uses_the_default_strategy():
    strategy = distribution.select_strategy()
    assert strategy is tf.distribute.get_strategy()
    assert strategy.num_replicas_in_sync == 1
    assert distribution.strategy_name(strategy) == "default"
    assert distribution.is_chief(strategy)


def test_one_named_device_trains_there_under_the_default_strategy():
    strategy = distribution.select_strategy("default", "cpu:0")
    assert isinstance(strategy, tf.distribute.OneDeviceStrategy)
    assert strategy.extended.worker_devices == ("/job:localhost/replica:0/task:0/device:CPU:0",)
    assert distribution.strategy_name(strategy) == "default"


def test_mirrored_without_gpus_or_devices_mirrors_over_the_cpu():
    strategy = distribution.select_strategy("mirrored")
    assert distribution.strategy_name(strategy) == "mirrored"
    assert strategy.num_replicas_in_sync == 1
    # A second run in the process reuses it: two strategies' collectives would clash.
    assert distribution.select_strategy("mirrored", "CPU:0") is strategy


def fake_gpus(monkeypatch, count):
    physical = [tf.config.PhysicalDevice(f"/physical_device:GPU:{i}", "GPU") for i in range(count)]
    logical = [tf.config.LogicalDevice(f"/device:GPU:{i}", "GPU") for i in range(count)]
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind: physical)
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind: logical)


def fake_strategy(monkeypatch, name):
    created = {}

    class Fake:
        num_replicas_in_sync = 2

        def __init__(self, devices=None):
            created["devices"] = devices

    monkeypatch.setattr(tf.distribute, name, Fake)
    return created, Fake


def test_several_gpus_use_mirrored_strategy(monkeypatch):
    fake_gpus(monkeypatch, 2)
    created, fake = fake_strategy(monkeypatch, "MirroredStrategy")
    assert isinstance(distribution.select_strategy(), fake)
    assert created["devices"] == ["/device:GPU:0", "/device:GPU:1"]
    assert isinstance(distribution.select_strategy("mirrored", "GPU:1"), fake)
    assert created["devices"] == ["/device:GPU:1"]


def test_auto_joins_the_cluster_that_tf_config_names(monkeypatch):
    monkeypatch.setenv(
        "TF_CONFIG", json.dumps({**TWO_WORKERS, "task": {"type": "worker", "index": 1}})
    )
    _, fake = fake_strategy(monkeypatch, "MultiWorkerMirroredStrategy")
    assert isinstance(distribution.select_strategy(), fake)
    # A one-worker "cluster" is a single process.
    monkeypatch.setenv(
        "TF_CONFIG",
        json.dumps(
            {"cluster": {"worker": ["localhost:2001"]}, "task": {"type": "worker", "index": 0}}
        ),
    )
    assert distribution.select_strategy() is tf.distribute.get_strategy()


@pytest.mark.parametrize(
    "spec, message",
    [
        ("gpu:0,tpu:1", "cannot read device 'tpu:1'. Use names like GPU:0,GPU:1"),
        ("GPU:0,gpu:0", "names gpu:0 twice"),
        ("GPU", "cannot read device 'GPU'"),
    ],
)
def test_unreadable_devices_are_config_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        distribution.parse_devices(spec)


def test_device_names_are_normalised():
    assert distribution.parse_devices(" gpu:0, /device:GPU:1 ,CPU:2") == [
        "/device:GPU:0",
        "/device:GPU:1",
        "/device:CPU:2",
    ]


def test_devices_that_do_not_fit_the_machine_or_strategy_are_config_errors(monkeypatch):
    with pytest.raises(ConfigError, match="names GPU:0, but this machine has 0 visible GPU"):
        distribution.select_strategy("mirrored", "GPU:0")
    tf.config.list_logical_devices("CPU")  # TensorFlow has started in this process
    with pytest.raises(ConfigError, match="Cannot split the CPU into 2 logical devices"):
        distribution.select_strategy("mirrored", "CPU:0,CPU:1")
    fake_gpus(monkeypatch, 2)
    with pytest.raises(ConfigError, match="Strategy 'default' trains on one device"):
        distribution.select_strategy("default", "GPU:0,GPU:1")


def test_multi_worker_needs_tf_config_and_no_devices(monkeypatch):
    with pytest.raises(ConfigError, match="needs the TF_CONFIG environment variable"):
        distribution.select_strategy("multi_worker")
    monkeypatch.setenv(
        "TF_CONFIG", json.dumps({**TWO_WORKERS, "task": {"type": "worker", "index": 0}})
    )
    with pytest.raises(ConfigError, match="'devices' does not apply to strategy 'multi_worker'"):
        distribution.select_strategy("multi_worker", "CPU:0")


def gpus(monkeypatch, capabilities):
    devices = [tf.config.PhysicalDevice(f"/physical_device:GPU:{i}", "GPU") for i in range(2)]
    devices = devices[: len(capabilities)]
    details = dict(zip((d.name for d in devices), capabilities, strict=True))
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind: devices)
    monkeypatch.setattr(
        tf.config.experimental,
        "get_device_details",
        lambda device: {"compute_capability": details[device.name]},
    )


def test_cpu_defaults_pad_to_the_longest_example_in_float32():
    assert distribution.resolve_pad_multiple("auto") == 1
    assert distribution.resolve_pad_multiple(16) == 16
    assert distribution.resolve_precision("auto") == "float32"
    assert distribution.resolve_precision("mixed_bfloat16") == "mixed_bfloat16"


def test_gpus_with_tensor_cores_default_to_mixed_float16(monkeypatch):
    gpus(monkeypatch, [(8, 0), (7, 5)])
    assert distribution.resolve_precision("auto") == "mixed_float16"
    assert distribution.resolve_pad_multiple("auto") == 8
    gpus(monkeypatch, [(8, 0), (6, 1)])  # one Pascal card: no float16 tensor cores
    assert distribution.resolve_precision("auto") == "float32"


def test_precision_policy_applies_inside_and_is_restored():
    import tf_keras

    before = tf_keras.mixed_precision.global_policy().name
    with distribution.precision_policy("mixed_float16"):
        assert tf_keras.mixed_precision.global_policy().name == "mixed_float16"
    assert tf_keras.mixed_precision.global_policy().name == before


def test_cpus_with_bfloat16_units_train_wide_models_in_mixed_bfloat16(monkeypatch):
    from tf_finetune.runtime import environment

    monkeypatch.setattr(environment, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    assert distribution.resolve_precision("auto", hidden_size=384) == "mixed_bfloat16"
    assert distribution.resolve_precision("auto", hidden_size=32) == "float32"  # too narrow
    assert distribution.resolve_precision("float32", hidden_size=384) == "float32"
    monkeypatch.setattr(environment, "cpu_flags", lambda: {"avx2", "amx_bf16", "amx_tile"})
    assert distribution.resolve_precision("auto", hidden_size=768) == "mixed_bfloat16"
    monkeypatch.setattr(environment, "cpu_flags", lambda: {"avx2", "avx512f"})
    assert distribution.resolve_precision("auto", hidden_size=768) == "float32"
    gpus(monkeypatch, [(8, 0)])  # GPUs decide, whatever the CPU
    monkeypatch.setattr(environment, "cpu_flags", lambda: {"avx512_bf16"})
    assert distribution.resolve_precision("auto", hidden_size=768) == "mixed_float16"
