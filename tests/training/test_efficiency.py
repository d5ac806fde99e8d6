"""Tests of the efficiency figures: the model's FLOPs per token and the machine's peak."""

import json

import pytest
from transformers import BertConfig, DistilBertConfig

from tf_finetune.training import efficiency


def test_flops_per_token_count_a_training_step_of_the_encoder():
    minilm = BertConfig(hidden_size=384, num_hidden_layers=6, intermediate_size=1536)
    # 3 passes x 6 layers x (2 x (4 d^2 + 2 d f) + 4 s d) at s = 32.
    per_layer = 2 * (4 * 384**2 + 2 * 384 * 1536) + 4 * 32 * 384
    assert efficiency.flops_per_token(minilm, 32) == 3 * 6 * per_layer  # ~64.6 MFLOP
    distil = DistilBertConfig(dim=768, n_layers=6, hidden_dim=3072)
    bert = BertConfig(hidden_size=768, num_hidden_layers=6, intermediate_size=3072)
    assert efficiency.flops_per_token(distil, 64) == efficiency.flops_per_token(bert, 64)
    assert efficiency.flops_per_token(object(), 64) is None


def test_the_matmul_peak_is_probed_once_per_machine(tmp_path, monkeypatch):
    probes = []

    def probe(device, dtype):
        probes.append((device, dtype))
        return 123.0

    monkeypatch.setenv("TF_FINETUNE_CACHE", str(tmp_path))
    monkeypatch.setattr(efficiency, "_probe", probe)
    monkeypatch.setattr(efficiency, "_probed", {})  # a fresh process
    assert efficiency.matmul_peak("CPU", "float32") == 123.0
    assert efficiency.matmul_peak("CPU", "float32") == 123.0
    assert efficiency.matmul_peak("CPU", "bfloat16") == 123.0
    assert probes == [("CPU", "float32"), ("CPU", "bfloat16")]
    kept = json.loads((tmp_path / "machine.json").read_text())
    assert len(kept) == 2 and all(value == 123.0 for value in kept.values())

    (tmp_path / "machine.json").write_text("{not json")  # damaged: probed again, replaced
    monkeypatch.setattr(efficiency, "_probed", {})  # by the next process
    assert efficiency.matmul_peak("CPU", "float32") == 123.0
    assert len(probes) == 3 and json.loads((tmp_path / "machine.json").read_text())

    # Without a cache folder, a process probes once: not again after training.
    monkeypatch.setenv("TF_FINETUNE_CACHE", "off")
    monkeypatch.setattr(efficiency, "_probed", {})
    assert efficiency.matmul_peak("CPU", "float32") == efficiency.matmul_peak("CPU", "float32")
    assert len(probes) == 4


def test_a_kept_peak_a_run_exceeded_is_measured_again_and_the_higher_kept(tmp_path, monkeypatch):
    # Probed while the machine was busy: 100 GFLOP/s, where a run then achieved 150.
    rates = iter([100.0, 180.0, 90.0])
    monkeypatch.setenv("TF_FINETUNE_CACHE", str(tmp_path))
    monkeypatch.setattr(efficiency, "_probe", lambda device, dtype: next(rates))
    monkeypatch.setattr(efficiency, "_probed", {})
    assert efficiency.matmul_peak("CPU", "float32") == 100.0
    assert efficiency.matmul_peak("CPU", "float32", exceeded=90.0) == 100.0  # not probed
    assert efficiency.matmul_peak("CPU", "float32", exceeded=150.0) == 180.0
    monkeypatch.setattr(efficiency, "_probed", {})  # the next process reads 180
    assert efficiency.matmul_peak("CPU", "float32", exceeded=150.0) == 180.0
    # A busy re-probe never lowers the kept figure.
    assert efficiency.matmul_peak("CPU", "float32", exceeded=200.0) == 180.0
    assert list(json.loads((tmp_path / "machine.json").read_text()).values()) == [180.0]


def test_each_run_times_one_short_round_and_a_low_kept_peak_rises(tmp_path, monkeypatch):
    calls, quick = [], {"rate": 0.0}

    def probe(device, dtype, seconds=None, rounds=5):
        calls.append(rounds)
        return 100.0 if rounds == 5 else quick["rate"]  # the full probe: a busy moment

    monkeypatch.setenv("TF_FINETUNE_CACHE", str(tmp_path))
    monkeypatch.setattr(efficiency, "_probe", probe)
    monkeypatch.setattr(efficiency, "_probed", {})
    efficiency.probe_before_training("float32")  # no kept peak: the full probe
    assert calls == [5] and efficiency.matmul_peak("CPU", "float32") == 100.0
    for rate, kept in ((150.0, 150.0), (120.0, 150.0)):  # a higher round raises it
        monkeypatch.setattr(efficiency, "_probed", {})  # the next run's process
        calls.clear()
        quick["rate"] = rate
        efficiency.probe_before_training("float32")
        assert calls == [1]
        assert efficiency.matmul_peak("CPU", "float32") == kept
    efficiency.probe_before_training("float32")  # the same process again: no probe
    assert calls == [1]
    assert list(json.loads((tmp_path / "machine.json").read_text()).values()) == [150.0]


def test_the_probe_measures_a_real_rate_and_figures_follow_from_it(monkeypatch):
    monkeypatch.setattr(efficiency, "_PROBE_SECONDS", 0.2)
    monkeypatch.setenv("TF_FINETUNE_CACHE", "off")
    monkeypatch.setattr(efficiency, "_probed", {})
    peak = efficiency.matmul_peak("CPU", "float32")
    assert 1 < peak < 100_000
    config = BertConfig(hidden_size=32, num_hidden_layers=2, intermediate_size=64)
    stats = {"samples_per_second": 10.0, "real_tokens_per_second": 150.0}
    stats["padded_tokens_per_second"] = 200.0
    monkeypatch.setattr(efficiency, "matmul_peak", lambda device, dtype, exceeded: 50.0)
    figures = efficiency.figures(stats, config, "float32", replicas=2)
    per_token = efficiency.flops_per_token(config, 20.0)
    assert figures["flops_per_token"] == per_token
    assert figures["matmul_peak_gflops"] == 100.0
    assert figures["peak_share"] == pytest.approx(per_token * 150 / 1e9 / 100)
    assert "% of this machine's float32 matmul peak (100 GFLOP/s)" in efficiency.describe(figures)
