"""How close training runs to what the machine can do.

The machine's peak is measured, not looked up: a short probe times matrix products of
a transformer's shapes on the training device and precision, and the result is kept
per machine in `$TF_FINETUNE_CACHE/machine.json` (next to the token cache), so only
the first run on a machine pays the ~2 s. The probe keeps its best of 5 rounds, but a
machine busy throughout gives a low peak: each later run probes one short round
before training and keeps the higher figure, so a low one rises to the machine's own.

The model's work is counted from its config. Per token and layer, a forward pass costs
2 x (4 d^2 + 2 d f) for the projections and the feed-forward block, plus 4 s d for
attention over s tokens; training costs three forward passes (the backward pass two).
Embedding lookups, layer norms and the classifier are left out; they are small. For
ALBERT, whose layers share weights, every layer still counts, as it computes.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import tensorflow as tf

from tf_finetune.data import tokenization
from tf_finetune.errors import short_reason
from tf_finetune.modeling import models
from tf_finetune.runtime import distribution, environment

logger = logging.getLogger(__name__)

_PROBE_SECONDS = 1.5
_PROBE_ROUNDS = 5
_QUICK_PROBE_SECONDS = 0.3  # one round, before each run's training once a peak is kept
_PROBE_SHAPES = {"CPU": (2048, 384, 1536), "GPU": (8192, 1024, 4096)}  # m, k, n
_probed: dict[str, float] = {}  # peaks measured by this process, by key


def flops_per_token(model_config, tokens_per_example: float) -> float | None:
    """Training FLOPs per token of an encoder with this config; None if its shape is unknown.

    Args:
        model_config: A transformers config (BERT-like names, or DistilBERT's).
        tokens_per_example: The mean (padded) sequence length attention runs over.
    """
    width = models.hidden_size(model_config)
    layers = _first(model_config, "num_hidden_layers", "n_layers")
    inner = _first(model_config, "intermediate_size", "hidden_dim")
    if not (width and layers and inner):
        return None
    forward = layers * (
        2 * (4 * width * width + 2 * width * inner) + 4 * tokens_per_example * width
    )
    return 3.0 * forward


def matmul_peak(device: str = "CPU", dtype: str = "float32", exceeded: float = 0.0) -> float:
    """GFLOP/s of a matrix product of transformer shapes on one device, kept per machine.

    Args:
        device: "CPU" or "GPU".
        dtype: The product's dtype.
        exceeded: GFLOP/s a run achieved. A kept peak below it was measured while the
            machine was busy: it is measured again, and the higher figure kept.
    """
    key = _key(device, dtype)
    # This process's own figure first: the cache folder may be off.
    kept = _probed.get(key) or _read(_cache_file()).get(key)
    if kept is not None and kept >= exceeded:
        return kept
    return _keep(key, max(kept or 0.0, _probe(device, dtype)))


def figures(stats: dict, model_config, precision: str, replicas: int) -> dict:
    """The run's efficiency: the model's FLOPs per token, the peak, the achieved share.

    Args:
        stats: Training figures with `real_tokens_per_second`, `padded_tokens_per_second`
            and `samples_per_second`.
        model_config: The model's transformers config.
        precision: The Keras precision policy of the run.
        replicas: Devices training in sync (the peak is one device's times this).
    """
    samples = stats.get("samples_per_second") or 0.0
    padded = stats.get("padded_tokens_per_second") or 0.0
    length = padded / samples if samples else 0.0
    per_token = flops_per_token(model_config, length)
    if per_token is None or not padded:
        return {}
    dtype = precision_dtype(precision)
    achieved = per_token * stats["real_tokens_per_second"] / 1e9
    peak = matmul_peak(distribution.device_type(), dtype, exceeded=achieved / replicas) * replicas
    return {
        "flops_per_token": per_token,
        "achieved_gflops": achieved,
        "padded_gflops": per_token * padded / 1e9,
        "matmul_peak_gflops": peak,
        "peak_dtype": dtype,
        "peak_share": achieved / peak if peak else None,
    }


def probe_before_training(precision: str) -> None:
    """Measures the peak now, while nothing else runs, once per process.

    A machine with no kept peak gets the full probe. Otherwise one short round is timed
    and the higher figure kept: a peak first measured on a busy machine rises to what
    the machine can do. After training, the input pipeline's threads may still be busy.
    """
    device, dtype = distribution.device_type(), precision_dtype(precision)
    key = _key(device, dtype)
    if key in _probed:
        return
    kept = _read(_cache_file()).get(key)
    if kept is None:
        matmul_peak(device, dtype)
        return
    quick = _probe(device, dtype, seconds=_QUICK_PROBE_SECONDS, rounds=1)
    if quick > kept:
        _keep(key, quick)
    else:
        _probed[key] = kept


def _key(device: str, dtype: str) -> str:
    return f"{_machine()}|{device}|{dtype}|tf {tf.__version__}"


def _keep(key: str, peak: float) -> float:
    """Keeps `peak` for this process and, where there is a cache folder, the machine."""
    _probed[key] = peak
    path = _cache_file()
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(_read(path) | {key: peak}, indent=2), encoding="utf-8")
            tmp.replace(path)
        except OSError as error:  # the figure is still right; it is only measured again
            logger.warning("Cannot keep the matmul probe in %s (%s).", path, short_reason(error))
    return peak


def precision_dtype(precision: str) -> str:
    """The dtype the matmuls of a Keras precision policy run in."""
    return {"mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}.get(precision, "float32")


def describe(stats: dict) -> str | None:
    """One line on the efficiency figures of `figures`, or None without them."""
    if not stats.get("matmul_peak_gflops"):
        return None
    return (
        f"Efficiency: {stats['flops_per_token'] / 1e6:.1f} MFLOP per token, "
        f"{stats['achieved_gflops']:.0f} GFLOP/s on real tokens "
        f"({stats['padded_gflops']:.0f} with padding): {100 * stats['peak_share']:.0f}% of this "
        f"machine's {stats['peak_dtype']} matmul peak ({stats['matmul_peak_gflops']:.0f} GFLOP/s)."
    )


def _probe(
    device: str, dtype: str, seconds: float | None = None, rounds: int = _PROBE_ROUNDS
) -> float:
    seconds = _PROBE_SECONDS if seconds is None else seconds
    m, k, n = _PROBE_SHAPES.get(device, _PROBE_SHAPES["CPU"])
    with tf.device(f"/{device}:0"):
        a = tf.random.normal((m, k), dtype=tf.float32)
        b = tf.random.normal((k, n), dtype=tf.float32)
        a, b = tf.cast(a, dtype), tf.cast(b, dtype)

        @tf.function
        def product(a, b):
            return tf.reduce_sum(tf.cast(tf.matmul(a, b)[:1, :1], tf.float32))

        product(a, b).numpy()  # trace and warm up
        rates = []
        for _ in range(rounds):  # the best round: a busy moment is not the peak
            calls, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds / rounds:
                product(a, b).numpy()
                calls += 1
            rates.append(2.0 * m * k * n * calls / (time.perf_counter() - started) / 1e9)
    return max(rates)


def _machine() -> str:
    return f"{environment.cpu_model()} x{os.cpu_count()}"


def _cache_file() -> Path | None:
    tokens = tokenization.cache_directory()
    return None if tokens is None else tokens.parent / "machine.json"


def _read(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _first(config, *names):
    for name in names:
        value = getattr(config, name, None)
        if value:
            return float(value)
    return None
