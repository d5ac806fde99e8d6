"""Fine-tuning several checkpoints or configs on the same data, and tabulating the results.

`compare` answers the tutorial's closing question ("which model gets the best macro F1,
and which is fastest?") with one call: each entry is a full `fit`, then its exported
SavedModel is timed on raw text. The comparison folder gets `comparison.md`,
`comparison.csv` and `comparison.png`, and each run's directory under `runs/`.

A finished run leaves `comparison_row.json` in its run directory; `resume=True` reuses
those rows and continues or starts the others, so an interrupted comparison does not
train its finished runs again.
"""

from __future__ import annotations

import csv
import dataclasses
import gc
import itertools
import json
import logging
import time
from pathlib import Path

from tf_finetune.config import DATA_KEYS, FitConfig, load_config
from tf_finetune.errors import ConfigError, TfFinetuneError, TrainingInterrupted
from tf_finetune.runtime import atomic

logger = logging.getLogger(__name__)

ROW_NAME = "comparison_row.json"
# Texts timed through each SavedModel, batch size of the timing.
INFERENCE_TEXTS = 512
INFERENCE_BATCH = 64
COLUMNS = {
    "run": "run",
    "model": "model",
    "macro_f1": "macro F1",
    "accuracy": "accuracy",
    "train_samples_per_second": "train samples/s",
    "inference_texts_per_second": "inference texts/s",
    "parameters": "parameters",
    "wall_seconds": "wall time (s)",
    "error": "error",
}


@dataclasses.dataclass
class Entry:
    """One run of a comparison: its name and resolved settings."""

    name: str
    config: FitConfig


def comparison_folder(output_dir: str | None = None, name: str | None = None) -> Path:
    """Returns the comparison's folder: `output_dir/name` [default:
    saved_models/compare-<timestamp>]."""
    return Path(output_dir or "saved_models") / (name or time.strftime("compare-%Y%m%d-%H%M%S"))


def plan(
    config_files: list[str],
    models: list[str],
    base_config: str | None,
    overrides: dict,
    folder: Path,
) -> list[Entry]:
    """Returns the runs of a comparison, each with its run directory under `folder/runs`.

    Args:
        config_files: YAML configs, one run each; or empty, with `models`.
        models: Checkpoints, each fine-tuned with `base_config` and `overrides`.
        base_config: YAML config shared by the `models` runs.
        overrides: Settings applied to every run (the command line's flags).
        folder: The comparison folder.

    Raises:
        ConfigError: Neither or both of configs and models are given, or the entries
            would not see the same data.
    """
    if bool(config_files) == bool(models):
        raise ConfigError(
            "Give either config files (tf-finetune compare A.yaml B.yaml) or --models A,B, "
            "not both and not neither."
        )
    overrides = {k: v for k, v in overrides.items() if k not in ("output_dir", "run_name")}
    runs = str(folder / "runs")
    entries = []
    for source in config_files or models:
        if config_files:
            config = load_config(source, overrides | {"output_dir": runs})
            name = Path(source).stem
        else:
            config = load_config(base_config, overrides | {"model": source, "output_dir": runs})
            name = source.split(":")[-1].rstrip("/").split("/")[-1]
        taken = {entry.name for entry in entries}
        unique, count = name, 1
        while unique in taken:
            count += 1
            unique = f"{name}-{count}"
        config.run_name = unique
        entries.append(Entry(unique, config))
    _check_same_data(entries, config_files or models)
    return entries


def _check_same_data(entries: list[Entry], sources: list[str]) -> None:
    first = entries[0].config
    for entry, source in zip(entries[1:], sources[1:], strict=True):
        for key in DATA_KEYS:
            if getattr(entry.config, key) != getattr(first, key):
                raise ConfigError(
                    f"{source} trains on other data than {sources[0]} ({key}: "
                    f"{getattr(entry.config, key)!r} against {getattr(first, key)!r}). A "
                    "comparison runs every entry on the same data: make the data keys equal."
                )


def compare(
    entries: list[Entry], folder: Path, resume: bool = False, overwrite: bool = False
) -> list[dict]:
    """Fine-tunes each entry, times its export, and writes the comparison's files.

    A run that fails (a checkpoint that cannot load, ...) gets a row with its error, and
    the others go on. Ctrl-C or SIGTERM stops the comparison, its run keeping a
    checkpoint; `resume=True` continues from there. `overwrite=True` trains every run
    again from scratch.

    Raises:
        ConfigError: Runs of the comparison exist and neither `resume` nor `overwrite`
            is given; nothing is changed.

    Returns:
        One row per entry, keys as in `COLUMNS`.
    """
    from tf_finetune import pipeline

    existing = [e.name for e in entries if (Path(e.config.output_dir) / e.name).exists()]
    if existing and not (resume or overwrite):
        # Each fit would refuse its folder, and the table of errors would replace the
        # finished comparison: refuse before touching anything.
        raise ConfigError(
            f"{folder} already holds the run(s) {', '.join(existing)}. Give --resume to "
            "reuse the finished runs and continue the others, or --overwrite to train every "
            "run again. Nothing was changed."
        )
    rows = []
    for number, entry in enumerate(entries, 1):
        run_path = Path(entry.config.output_dir) / entry.name
        row_path = run_path / ROW_NAME
        if resume and row_path.is_file():
            logger.info("Run %d/%d (%s) finished before: reused.", number, len(entries), entry.name)
            rows.append(json.loads(row_path.read_text(encoding="utf-8")))
            continue
        logger.info("Run %d/%d: %s (%s).", number, len(entries), entry.name, entry.config.model)
        row = {"run": entry.name, "model": entry.config.model}
        started = time.perf_counter()
        try:
            result = pipeline.fit(
                entry.config, resume=resume and run_path.is_dir(), overwrite=overwrite
            )
        except TrainingInterrupted:
            raise
        except TfFinetuneError as error:
            logger.warning("Run %s failed: %s", entry.name, error)
            rows.append(row | {"error": str(error)})
            continue
        finally:
            gc.collect()
        row |= {
            "macro_f1": result.report["macro avg"]["f1-score"],
            "accuracy": result.report["accuracy"],
            "train_samples_per_second": result.stats["samples_per_second"],
            "inference_texts_per_second": _inference_speed(result),
            "parameters": result.stats.get("parameters"),
            "wall_seconds": time.perf_counter() - started,
        }
        atomic.write_text(row_path, json.dumps(row, indent=2) + "\n")
        rows.append(row)
    write_comparison(rows, folder)
    return rows


def _inference_speed(result) -> float | None:
    """Texts per second of the run's SavedModel on up to `INFERENCE_TEXTS` raw texts."""
    from tf_finetune.errors import ExportError
    from tf_finetune.serving import prediction

    if result.token_ids_only_reason:
        return None
    try:
        model = prediction.ExportedModel(result.saved_model_dir)
    except ExportError:
        return None
    with (result.run_dir / "predictions.csv").open(newline="", encoding="utf-8") as handle:
        texts = [row["text"] for row in itertools.islice(csv.DictReader(handle), INFERENCE_TEXTS)]
    batches = [texts[i : i + INFERENCE_BATCH] for i in range(0, len(texts), INFERENCE_BATCH)]
    model.predict(batches[0])  # the first call traces the signature
    started = time.perf_counter()
    for batch in batches:
        model.predict(batch)
    return len(texts) / (time.perf_counter() - started)


def write_comparison(rows: list[dict], folder: Path) -> None:
    """Writes `comparison.md`, `comparison.csv` and `comparison.png` into `folder`."""
    from tf_finetune.evaluation import plots

    folder.mkdir(parents=True, exist_ok=True)
    with atomic.staged_files(folder) as staging:
        with (staging / "comparison.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(COLUMNS))
            writer.writeheader()
            writer.writerows({key: row.get(key, "") for key in COLUMNS} for row in rows)
        (staging / "comparison.md").write_text(markdown_table(rows), encoding="utf-8")
        plots.comparison_png(rows, staging / "comparison.png")


def markdown_table(rows: list[dict]) -> str:
    """Returns the comparison as a Markdown table, then which run is best at what."""
    shown = [key for key in COLUMNS if key != "error" or any(row.get("error") for row in rows)]
    lines = [
        "| " + " | ".join(COLUMNS[key] for key in shown) + " |",
        "|" + "---|" * len(shown),
    ]
    for row in rows:
        lines.append("| " + " | ".join(_cell(key, row.get(key)) for key in shown) + " |")
    lines.append("")
    for key, what in (
        ("macro_f1", "Best macro F1"),
        ("train_samples_per_second", "Fastest training"),
        ("inference_texts_per_second", "Fastest inference"),
    ):
        scored = [row for row in rows if row.get(key) is not None]
        if scored:
            best = max(scored, key=lambda row: row[key])
            lines.append(f"- {what}: **{best['run']}** ({_cell(key, best[key])}).")
    return "\n".join(lines) + "\n"


def _cell(key: str, value) -> str:
    if value is None or value == "":
        return "-"
    if key in ("macro_f1", "accuracy"):
        return f"{value:.4f}"
    if key == "parameters":
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return str(value).replace("|", "\\|").replace("\n", " ")
