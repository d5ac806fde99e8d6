"""Times MiniLM training steps under each setting tf-finetune chose or left out.

    .venv/bin/python benchmarks/probe_step.py [--steps 40] [--output benchmarks/step_probes.md]

Each variant runs in a process of its own (thread settings are per process), on the
same 32-example grouped batches of rotten_tomatoes, and reports the first step (tracing
included), the median and mean of the other steps, and the traces of the train function.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {
    "default": "tf-finetune's defaults (FusedAdam, slots built first, pad multiple 1)",
    "keras_adam": "tf_keras.optimizers.Adam, slots made in the first step",
    "pad_multiple_8": "batch lengths rounded up to a multiple of 8",
    "jit_compile": "XLA: compile(jit_compile=True)",
    "steps_per_execution_4": "compile(steps_per_execution=4)",
    "inter_op_1": "one inter-op thread",
    "onednn_off": "TF_ENABLE_ONEDNN_OPTS=0",
}


def probe(variant: str, steps: int, data: Path) -> dict:
    """Runs one variant in this process and returns its step times."""
    import numpy as np
    import tensorflow as tf

    if variant == "inter_op_1":
        tf.config.threading.set_inter_op_parallelism_threads(1)
    import tf_keras

    from tf_finetune import config
    from tf_finetune.data import batching, loading, tokenization
    from tf_finetune.modeling import losses, models, optimization
    from tf_finetune.training import throughput

    settings = config.load_config(
        None,
        {
            "train_file": str(data / "train.csv"),
            "validation_file": str(data / "validation.csv"),
            "max_train_samples": 32 * steps,
        },
    )
    tf_keras.utils.set_random_seed(0)
    path = models.resolve_model_path(settings.model)
    loaded = loading.load_data(settings)
    tokenizer = tokenization.load_tokenizer(path)
    tokens = tokenization.tokenize(loaded.splits, tokenizer, "auto", "grouped", 512)
    batches = batching.grouped_batches(
        tokens.splits["train"],
        tokens.input_names,
        batching.pad_values(tokenizer),
        32,
        group=True,
        seed=0,
        pad_to_multiple_of=8 if variant == "pad_multiple_8" else 1,
        max_length=tokens.max_length,
    )
    model = models.build_model(path, models.load_model_config(path, loaded.label_names))
    if variant in ("keras_adam", "jit_compile", "steps_per_execution_4"):
        model.compile(
            optimizer=tf_keras.optimizers.Adam(5e-5)
            if variant == "keras_adam"
            else optimization.FusedAdam(5e-5),
            loss=losses.ClassificationLoss(),
            metrics=[tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            jit_compile=variant == "jit_compile",
            steps_per_execution=4 if variant == "steps_per_execution_4" else 1,
        )
        if variant != "keras_adam":
            optimization.create_slots(model.optimizer, model.trainable_variables)
    else:
        models.compile_model(model, 5e-5)
    meter = throughput.SpeedMeter(batches)
    start = time.perf_counter()
    model.fit(batches.dataset, epochs=1, steps_per_epoch=batches.steps, callbacks=[meter])
    per_call = 4 if variant == "steps_per_execution_4" else 1
    return {
        "fit_seconds": time.perf_counter() - start,
        "first_step": meter.first_step_seconds,
        "median_step": float(np.median(meter.step_seconds)) / per_call,
        "mean_step": float(np.mean(meter.step_seconds)) / per_call,
        "traces": model.train_function.experimental_get_tracing_count(),
        "padding_share": batches.padding(0).padding_share,
        "tf_version": tf.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/rotten_tomatoes"))
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--variant", choices=VARIANTS, help="Run one variant here (internal).")
    parser.add_argument("--result", help="Where --variant writes its JSON (internal).")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "step_probes.md"))
    args = parser.parse_args()
    if args.variant:
        result = probe(args.variant, args.steps, Path(args.data))
        Path(args.result).write_text(json.dumps(result), encoding="utf-8")
        return
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for variant in args.variants:
            description = VARIANTS[variant]
            print(f"{variant} ...", flush=True)
            out = Path(scratch) / f"{variant}.json"
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
            if variant == "onednn_off":
                env["TF_ENABLE_ONEDNN_OPTS"] = "0"
            command = [sys.executable, __file__, "--variant", variant, "--result", str(out)]
            command += ["--steps", str(args.steps), "--data", args.data]
            subprocess.run(command, env=env, check=True, capture_output=True)
            r = json.loads(out.read_text(encoding="utf-8"))
            rows.append(
                f"| {variant} | {description} | {r['first_step']:.1f} | {r['median_step']:.3f} "
                f"| {r['mean_step']:.3f} | {r['traces']} | {100 * r['padding_share']:.1f}% |"
            )
    text = "\n".join(
        [
            f"# Training-step probes: all-MiniLM-L6-v2, batch 32, {args.steps} grouped "
            "batches of rotten_tomatoes",
            "",
            "| variant | what | first step s | median step s | mean step s | traces | padding |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"Command: `.venv/bin/python benchmarks/probe_step.py --steps {args.steps} "
            f"--variants {' '.join(args.variants)}`; "
            f"TensorFlow {r['tf_version']}, {os.cpu_count()} CPU cores, "
            f"{time.strftime('%Y-%m-%d')}.",
            "",
        ]
    )
    print(text)
    Path(args.output).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
