"""Times fine-tuning and inference three ways on one machine and writes BENCHMARKS.md.

    make benchmark            # installs .venv-bench (the package, torch 2.13.0 CPU) first
    .venv-bench/bin/python benchmarks/run_benchmark.py [--rows N] [--epochs E]

Training, all-MiniLM-L6-v2 on the same rotten_tomatoes rows, batch 32, Adam 5e-5:
  tutorial     the Hugging Face tutorial's Keras recipe (pad to the longest train text)
  tf-finetune  `tf-finetune fit` with its defaults, and in float32 where those are not
  trainer      transformers' PyTorch Trainer
Inference, texts/s at batch 1 and 64: the exported SavedModel on raw text, the PyTorch
model in eager mode, Keras `predict` on token ids.
Each recipe's GFLOP/s on real tokens is set against the machine's float32 and bfloat16
matmul peaks, probed first; wall time against the tutorial's is the whole-process ratio.

Each recipe runs in a process of its own; wall time and peak RSS are the process's.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RECIPES = Path(__file__).resolve().parent / "recipes.py"


def run_child(command: list[str], out: Path | None = None) -> dict:
    """Runs `command`, returning its JSON result with wall seconds and peak RSS in MiB.

    The child's own peak RSS comes from `wait4`, which `RUSAGE_CHILDREN` cannot give.
    """
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_USE_LEGACY_KERAS", None)
    with tempfile.TemporaryFile("w+") as log:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode:
            log.seek(0)
            sys.exit(f"{shlex.join(command)} failed:\n{log.read()[-3000:]}")
    result = json.loads(out.read_text(encoding="utf-8")) if out else {}
    result = {**result, "wall_seconds": wall, "peak_rss_mib": usage.ru_maxrss / 1024}
    print(json.dumps(result), flush=True)
    return result


def train_rows(name: str, result: dict, baseline: dict | None, peak: float) -> list[str]:
    """One recipe's row; `peak` is the machine's float32 matmul GFLOP/s."""
    seconds = result["train_seconds"]
    samples = result["train_samples"] / seconds
    speedup = samples / (baseline["train_samples"] / baseline["train_seconds"]) if baseline else 1
    whole = baseline["wall_seconds"] / result["wall_seconds"] if baseline else 1
    padding = 1 - result["real_tokens"] / result["padded_tokens"]
    achieved = achieved_gflops(result)
    return [
        name,
        f"{samples:.1f}",
        f"{speedup:.2f}x",
        f"{result['real_tokens'] / seconds:,.0f}",
        f"{100 * padding:.1f}%",
        f"{achieved:.0f} ({100 * achieved / peak:.0f}%)",
        f"{seconds:.0f}",
        f"{result['wall_seconds']:.0f}",
        f"{whole:.2f}x",
        str(result["traced_train_functions"]),
        f"{result['val_accuracy']:.4f}",
        f"{result['peak_rss_mib']:,.0f}",
    ]


def achieved_gflops(result: dict) -> float:
    """GFLOP/s a recipe spent on real tokens, at MiniLM's training FLOPs per token."""
    from recipes import minilm_path  # beside this script, so on its path
    from transformers import AutoConfig

    from tf_finetune.training import efficiency

    config = AutoConfig.from_pretrained(minilm_path())
    length = result["padded_tokens"] / result["train_samples"]
    per_token = efficiency.flops_per_token(config, length)
    return per_token * result["real_tokens"] / result["train_seconds"] / 1e9


def matmul_peaks() -> dict:
    """The machine's float32 and bfloat16 matmul peaks, probed in a quiet child process."""
    code = (
        "import json; from tf_finetune.training import efficiency as e; "
        "print(json.dumps({d: e._probe('CPU', d) for d in ('float32', 'bfloat16')}))"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def phase_table(fits: dict) -> str:
    """Each fit run's seconds per phase, the phases in the order the run met them."""
    names = list(dict.fromkeys(p for r in fits.values() for p in r["phase_seconds"]))
    rows = []
    for name, result in fits.items():
        seconds = result["phase_seconds"]
        rest = result["wall_seconds"] - sum(seconds.values())
        rows.append(
            [name]
            + [f"{seconds.get(phase, 0.0):.1f}" for phase in names]
            + [f"{rest:.1f}", f"{result['wall_seconds']:.0f}"]
        )
    return table(["recipe", *names, "exit and other", "wall s"], rows)


def precision_ratio(results: dict, peaks: dict) -> str:
    """The float32 fit's share of the float32 peak, how much faster the default was, and
    the most it could have been.

    The ceiling: the float32 run's matmuls (on padded tokens, so the generous side) at
    the float32 peak take `M32` of its train seconds `t32`; the rest of its steps took
    `t32 - M32`. Were the matmuls at the bfloat16 peak and the rest no slower than in
    float32, a step would take `M16 + (t32 - M32)`: the ratio of the two is the most
    bfloat16 could gain on this machine.
    """
    from tf_finetune.training import efficiency

    if "fit_float32" not in results:
        return ""
    full, fit = results["fit_float32"], results["fit"]
    speed = (fit["real_tokens"] / fit["train_seconds"]) / (
        full["real_tokens"] / full["train_seconds"]
    )
    dtype = efficiency.precision_dtype(fit["precision"])
    flops = (
        achieved_gflops(full) * full["train_seconds"] * full["padded_tokens"] / full["real_tokens"]
    )  # GFLOP, padded tokens counted
    at_peak = {d: flops / peaks[d] for d in ("float32", dtype)}  # seconds
    rest = full["train_seconds"] - at_peak["float32"]
    ceiling = full["train_seconds"] / (at_peak[dtype] + rest)
    rest_low = fit["train_seconds"] * full["real_tokens"] / fit["real_tokens"] - at_peak[dtype]
    return (
        f"\nIn float32 the same fit reached {achieved_gflops(full):.0f} GFLOP/s on real tokens; "
        f"{fit['precision']} trained {speed:.2f}x as many real tokens per second. The most "
        f"{dtype} could gain here is {ceiling:.2f}x: the float32 fit's matmuls at the "
        f"float32 peak would take {at_peak['float32']:.0f} of its {full['train_seconds']:.0f} "
        f"train seconds, the rest of its steps {rest:.0f} s; with the matmuls at the {dtype} "
        f"peak ({at_peak[dtype]:.0f} s) and the rest no slower, a step takes "
        f"1/{ceiling:.2f} as long. The {dtype} fit spent {rest_low:.0f} s beyond its "
        f"matmuls at the {dtype} peak, for the same tokens."
    )


def with_range(result: dict, key: str) -> str:
    low, high = result[f"{key}_spread"]
    return f"{result[key]:.1f} ({low:.1f}-{high:.1f})"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> str:
    from tf_finetune.runtime.environment import cpu_model

    return f"{cpu_model()}, {os.cpu_count()} cores, no GPU used"


def fit_result(run_dir: Path) -> dict:
    stats = json.loads((run_dir / "training_stats.json").read_text(encoding="utf-8"))
    real = stats["real_tokens_per_second"] * stats["train_seconds"]
    padded = stats["padded_tokens_per_second"] * stats["train_seconds"]
    return {
        "train_seconds": stats["train_seconds"],
        "train_samples": round(stats["samples_per_second"] * stats["train_seconds"]),
        "real_tokens": real,
        "padded_tokens": padded,
        "traced_train_functions": stats["traced_train_functions"],
        "val_accuracy": stats["per_epoch"][-1]["val_accuracy"],
        "tracing_seconds": stats["tracing_seconds"],
        "precision": yaml.safe_load((run_dir / "fit_config.yaml").read_text(encoding="utf-8"))[
            "mixed_precision"
        ],
        "phase_seconds": stats["phase_seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/rotten_tomatoes"))
    parser.add_argument("--rows", type=int, default=0, help="Train rows (seeded subset); 0: all")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    python = sys.executable
    data = str(Path(args.data).resolve())
    common = ["--data", data, "--rows", str(args.rows), "--epochs", str(args.epochs)]
    started = time.perf_counter()
    print("matmul peaks ...", flush=True)
    peaks = matmul_peaks()

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        results = {}
        print("tutorial recipe ...", flush=True)
        out = scratch / "tutorial.json"
        results["tutorial"] = run_child(
            [python, str(RECIPES), "tutorial", *common, "--out", str(out)], out
        )
        print("tf-finetune fit ...", flush=True)
        fit_command = [
            python, "-m", "tf_finetune", "-q", "fit",
            "--train-file", f"{data}/train.csv",
            "--validation-file", f"{data}/validation.csv",
            "--epochs", str(args.epochs),
            "--output-dir", str(scratch), "--run-name", "fit",
        ]  # fmt: skip
        if args.rows:
            fit_command += ["--max-train-samples", str(args.rows)]
        timing = run_child(fit_command)
        results["fit"] = {**fit_result(scratch / "fit"), **timing}
        if results["fit"]["precision"] != "float32":  # the float32 figures too
            print("tf-finetune fit --mixed-precision float32 ...", flush=True)
            command = [*fit_command[:-1], "fit_float32", "--mixed-precision", "float32"]
            timing = run_child(command)
            results["fit_float32"] = {**fit_result(scratch / "fit_float32"), **timing}
        print("PyTorch Trainer ...", flush=True)
        out = scratch / "trainer.json"
        results["trainer"] = run_child(
            [python, str(RECIPES), "trainer", *common, "--scratch", str(scratch / "hf"),
             "--out", str(out)],
            out,
        )  # fmt: skip
        inference = {}
        for engine in ("savedmodel", "torch", "keras"):
            print(f"inference: {engine} ...", flush=True)
            out = scratch / f"{engine}.json"
            inference[engine] = run_child(
                [python, str(RECIPES), "inference", "--engine", engine, "--data", data,
                 "--run", str(scratch / "fit"), "--out", str(out)],
                out,
            )  # fmt: skip

    total = time.perf_counter() - started
    write_report(args, results, inference, total, peaks)


def write_report(args, results: dict, inference: dict, total: float, peaks: dict) -> None:
    import tensorflow as tf
    import torch
    import transformers

    from tf_finetune.training import efficiency

    header = [
        "recipe", "train samples/s", "vs tutorial", "real tokens/s", "padding",
        "GFLOP/s on real tokens (of f32 peak)", "train s", "wall s", "wall vs tutorial",
        "traced train fns", "val acc", "peak RSS MiB",
    ]  # fmt: skip
    base, fit = results["tutorial"], results["fit"]
    peak = peaks["float32"]
    fits = {f"tf-finetune fit (defaults: {fit['precision']})": fit}
    if "fit_float32" in results:
        fits["tf-finetune fit --mixed-precision float32"] = results["fit_float32"]
    training = table(
        header,
        [
            train_rows("tutorial Keras recipe (max_length 78)", base, None, peak),
            *(train_rows(name, result, base, peak) for name, result in fits.items()),
            train_rows("PyTorch Trainer", results["trainer"], base, peak),
        ],
    )
    phases = phase_table(fits)
    fit_dtype = efficiency.precision_dtype(fit["precision"])
    inference_table = table(
        ["engine", "texts/s, batch 1", "texts/s, batch 64", "peak RSS MiB"],
        [
            [name, with_range(r, "batch_1"), with_range(r, "batch_64"), f"{r['peak_rss_mib']:,.0f}"]
            for name, r in (
                ("SavedModel, raw text (tokenizer in graph)", inference["savedmodel"]),
                ("PyTorch eager, no_grad (+ fast tokenizer)", inference["torch"]),
                ("Keras predict on token ids", inference["keras"]),
            )
        ],
    )
    rows = f"{args.rows:,}" if args.rows else "all 8,530"
    command = "make benchmark  # .venv-bench/bin/python benchmarks/run_benchmark.py " + (
        f"--rows {args.rows} --epochs {args.epochs}"
    )
    text = f"""# Benchmarks

Fine-tuning all-MiniLM-L6-v2 on {rows} rotten_tomatoes training rows (the same rows
for every recipe), {args.epochs} epoch(s), batch 32, Adam 5e-5, validation on the 1,066
validation rows. Train samples/s counts training steps only (tracing included,
validation excluded); wall s is the whole command, from process start to exit,
including loading, tokenization, tracing, validation and (tf-finetune) the report and
SavedModel export.

{training}

The machine's matmul peak (MiniLM's FFN shape, best of 5 rounds, probed first in a
process of its own): float32 {peaks["float32"]:.0f} GFLOP/s, bfloat16 {peaks["bfloat16"]:.0f}.
GFLOP/s count MiniLM's training FLOPs per real token (`efficiency.flops_per_token`).
tf-finetune trained in {fit_dtype}: {achieved_gflops(fit):.0f} GFLOP/s is
{100 * achieved_gflops(fit) / peaks.get(fit_dtype, peak):.0f}% of the {fit_dtype} peak.
Its first step, tracing included, took {fit["tracing_seconds"]:.1f} s longer than a typical
step.{precision_ratio(results, peaks)}

Where each `fit` process's seconds went (`phase_seconds` of its `training_stats.json`;
start-up is imports before the run, compile the first step's extra time):

{phases}

Inference, texts per second from raw text to probabilities (Keras: from token ids): the
median of 5 timed passes over the sample (200 texts at batch 1, 1,024 at batch 64) after
one untimed pass, and in brackets the slowest and fastest pass:

{inference_table}

- Command: `{command}` ({total / 60:.1f} min in all)
- Machine: {machine()}
- Versions: Python {platform.python_version()}, TensorFlow {tf.__version__},
  transformers {transformers.__version__}, torch {torch.__version__}
  ({results["trainer"]["torch_threads"]} threads)
- Date: {datetime.date.today().isoformat()}
"""
    print(text)
    Path(args.output).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
