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
