"""Tests of strategy selection."""

import tensorflow as tf

from tf_finetune import distribution


def test_one_device_uses_the_default_strategy():
    strategy = distribution.select_strategy()
    assert strategy is tf.distribute.get_strategy()
    assert strategy.num_replicas_in_sync == 1


def test_several_gpus_use_mirrored_strategy(monkeypatch):
    devices = [tf.config.LogicalDevice(f"/device:GPU:{i}", "GPU") for i in range(2)]
    created = {}

    class FakeMirrored:
        def __init__(self, names):
            created["devices"] = names

    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind: devices)
    monkeypatch.setattr(tf.distribute, "MirroredStrategy", FakeMirrored)
    assert isinstance(distribution.select_strategy(), FakeMirrored)
    assert created["devices"] == ["/device:GPU:0", "/device:GPU:1"]


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
