"""Data at the tutorial's full yelp_review_full size: time and memory to the first step.

    .venv/bin/python benchmarks/scale_benchmark.py [--rows 10000 100000 650000]
        [--max-length 512] [--output benchmarks/scale_benchmark.md]

Synthetic yelp-like reviews (seeded: five star labels, ~200 words, ~260 MiniLM tokens
each, lengths spread as reviews are) are written once per size as Parquet. Each size
then runs twice in a fresh process, the second on the same data (the token cache
warm), with the packaged MiniLM tokenizer and a tiny random BERT (2 layers of 32), so
time and memory are the pipeline's, not the model's: load the files, tokenize, plan
and build the batches, build the model, train 20 steps. Peak RSS is the process's
high-water mark at the first step and at the 20th; RSS at the 20th is what it then
holds. The first run's token cache is emptied before it starts.

"Two passes" times the tokenization the package did before one pass (a length pass
over the training texts, then `Dataset.map`) on the first 100,000 training texts,
in the same process, for the per-row speed-up.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEPS = 20


def write_reviews(path: Path, rows: int, seed: int) -> None:
    """Writes `rows` synthetic reviews with star labels to a Parquet file."""
    import numpy as np
    import pandas as pd

    from tf_finetune.data.packaged import model_path

    vocab = (Path(model_path("packaged:all-MiniLM-L6-v2")) / "vocab.txt").read_text().split()
    words = np.array([w for w in vocab[2000:] if w.isalpha() and len(w) > 2])
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(170), 0.6, rows).astype(int), 5, 1500)
    picks = rng.integers(0, len(words), lengths.sum())
    starts = np.concatenate([[0], np.cumsum(lengths)])
    texts = [" ".join(words[picks[a:b]]) for a, b in itertools.pairwise(starts)]
    labels = rng.integers(1, 6, rows)
    pd.DataFrame({"text": texts, "label": labels}).to_parquet(path, index=False)


def tiny_checkpoint(folder: Path) -> Path:
    """The packaged MiniLM tokenizer with a random 2-layer BERT of width 32."""
    from transformers import AutoTokenizer, BertConfig, TFBertForSequenceClassification

    from tf_finetune.data.packaged import model_path

    tokenizer = AutoTokenizer.from_pretrained(model_path("packaged:all-MiniLM-L6-v2"))
    tokenizer.save_pretrained(folder)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=512, num_labels=5,
    )  # fmt: skip
    model = TFBertForSequenceClassification(config)
    model(model.dummy_inputs)
    model.save_pretrained(folder)
    return folder


def rss_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def peak_gib() -> float:
    """This process's own peak RSS (`ru_maxrss` would report the parent's, larger)."""
    from tf_finetune.runtime.memory import peak_rss_mib

    return peak_rss_mib() / 1024


def child(args) -> None:
    """One run: load, tokenize, batch, build, train; prints its figures as JSON."""
    start = time.perf_counter()
    import tensorflow as tf
    import tf_keras

    from tf_finetune import pipeline
    from tf_finetune.config import load_config
    from tf_finetune.data import loading
    from tf_finetune.runtime import distribution

    config = load_config(
        overrides={
            "model": str(args.checkpoint),
            "train_file": str(args.train),
            "validation_file": str(args.small),
            "test_file": str(args.small),
            "max_length": args.max_length,
            "batch_size": 32,
            "epochs": 1,
        }
    )
    figures = {"import_s": time.perf_counter() - start}
    mark = time.perf_counter()
    data = loading.load_data(config)
    figures["load_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    inputs = pipeline.tokenize_inputs(config, data, str(args.checkpoint))
    tokens = inputs.tokens
    figures["tokenize_s"] = time.perf_counter() - mark
    figures["cached_splits"] = tokens.cached
    strategy = tf.distribute.get_strategy()
    config = dataclasses.replace(
        config,
        max_length=tokens.max_length,
        pad_to_multiple_of=distribution.resolve_pad_multiple(config.pad_to_multiple_of),
        mixed_precision=distribution.resolve_precision(config.mixed_precision),
    )
    plan = pipeline.plan_batches(config, inputs, strategy)
    train = plan.recipe.batches(tokens.splits["train"], 1, config.seed)
    model = pipeline.build_model(config, inputs, plan, strategy)
    first = {}

    class FirstStep(tf_keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:
                first["at_s"] = time.perf_counter() - start
                first["peak_gib"] = peak_gib()

    model.fit(train.dataset, steps_per_epoch=STEPS, epochs=1, verbose=0, callbacks=[FirstStep()])
    figures.update(
        first_step_s=first["at_s"],
        peak_rss_gib=first["peak_gib"],
        steady_rss_gib=rss_gib(),
        run_peak_gib=peak_gib(),
        truncated=tokens.truncated["train"],
    )
    if args.two_passes:
        figures.update(two_passes(inputs.tokenizer, args.train, tokens.max_length, args))
    print(json.dumps(figures))


def two_passes(tokenizer, train_file, max_length, args) -> dict:
    """The package's tokenization before one pass, and one pass, on the same texts."""
    import datasets
    import pandas as pd

    from tf_finetune.data import tokenization

    frame = pd.read_parquet(train_file).head(100_000)
    sample = datasets.Dataset.from_dict(
        {"text": list(frame["text"]), "labels": list(frame["label"])}
    )
    mark = time.perf_counter()
    encoded = tokenizer(sample["text"][:], truncation=True, max_length=513)
    _ = [len(ids) for ids in encoded["input_ids"]]
    del encoded
    sample.map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=max_length),
        batched=True,
        keep_in_memory=True,
    )
    old = time.perf_counter() - mark
    mark = time.perf_counter()
    tokenization.tokenize({"train": sample}, tokenizer, args.max_length, "grouped", 512)
    return {
        "two_passes_rows_s": len(sample) / old,
        "one_pass_rows_s": len(sample) / (time.perf_counter() - mark),
    }


def run(folder: Path, checkpoint: Path, rows: int, max_length: int, two: bool, cache: Path):
    train, small = folder / f"train-{rows}.parquet", folder / "small.parquet"
    command = [
        sys.executable, __file__, "--child", "--checkpoint", str(checkpoint),
        "--train", str(train), "--small", str(small), "--max-length", str(max_length),
    ] + (["--two-passes"] if two else [])  # fmt: skip
    env = dict(os.environ, TF_FINETUNE_CACHE=str(cache), TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"{rows} rows failed:\n{done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["cache_gib"] = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) / 2**30
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 650_000])
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "scale_benchmark.md")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--two-passes", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--train", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--small", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    folder = Path(tempfile.mkdtemp(prefix="tf_finetune-scale-"))
    try:
        checkpoint = tiny_checkpoint(folder / "tiny")
        write_reviews(folder / "small.parquet", 2_000, seed=1)
        lines = [
            f"Command: `python {' '.join(sys.argv)}` (max_length {args.max_length}, "
            f"{STEPS} steps of 32)",
            "",
            "| rows | run | load s | tokenize s | first step s | peak RSS to step 1, GiB | "
            f"peak RSS to step {STEPS}, GiB | RSS at step {STEPS}, GiB | cache GiB |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        speed = None
        for rows in args.rows:
            write_reviews(folder / f"train-{rows}.parquet", rows, seed=rows)
            cache = folder / f"cache-{rows}"
            shutil.rmtree(cache, ignore_errors=True)
            for label in ("first", "second"):
                two = label == "first" and rows == max(args.rows)
                figures = run(folder, checkpoint, rows, args.max_length, two, cache)
                lines.append(
                    f"| {rows:,} | {label} | {figures['load_s']:.1f} | "
                    f"{figures['tokenize_s']:.1f} | {figures['first_step_s']:.1f} | "
                    f"{figures['peak_rss_gib']:.2f} | {figures['run_peak_gib']:.2f} | "
                    f"{figures['steady_rss_gib']:.2f} | "
                    f"{figures['cache_gib']:.2f} |"
                )
                print(lines[-1], flush=True)
                if two:
                    speed = figures
            (folder / f"train-{rows}.parquet").unlink()
        if speed:
            lines += [
                "",
                f"Tokenizing 100,000 training texts: {speed['two_passes_rows_s']:,.0f} rows/s "
                f"in the two passes used before, {speed['one_pass_rows_s']:,.0f} rows/s in one "
                f"pass ({speed['one_pass_rows_s'] / speed['two_passes_rows_s']:.2f}x).",
            ]
        table = "\n".join(lines) + "\n"
        print(table)
        args.output.write_text(table, encoding="utf-8")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
