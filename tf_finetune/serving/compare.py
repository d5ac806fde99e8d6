"""Fine-tuning several checkpoints or configs on the same data, and tabulating the results.

`compare` answers the tutorial's closing question ("which model gets the best macro F1,
and which is fastest?") with one call: each entry is a full `fit`, then its exported
SavedModel is timed on raw text. The comparison folder gets `comparison.md`,
`comparison.csv` and `comparison.png`, and each run's directory under `runs/`.

A finished run leaves `comparison_row.json` in its run directory; `resume=True` reuses
those rows and continues or starts the others, so an interrupted comparison does not
train its finished runs again.

The figures are made to be compared. Training speed leaves out the first step (its
tracing is slowest in the first run of a process, so it would depend on the order),
and is the median of windows of steps with their range. The exports are timed after
every run has finished, in rounds that rotate the models' order, median and range
reported. Macro F1 gets a bootstrap interval over the evaluation examples. A model is
called best or fastest only when its range clears every other's; else the table
says which tie. Every "-" in the table is explained under it.
"""

from __future__ import annotations

import csv
import dataclasses
import gc
import itertools
import json
import logging
import statistics
import time
from pathlib import Path

from tf_finetune.config import DATA_KEYS, FitConfig, load_config
from tf_finetune.errors import ConfigError, TfFinetuneError, TrainingInterrupted
from tf_finetune.runtime import atomic

logger = logging.getLogger(__name__)

ROW_NAME = "comparison_row.json"
# Texts timed through each SavedModel, batch size of the timing, rounds of timing.
INFERENCE_TEXTS = 512
INFERENCE_BATCH = 64
INFERENCE_ROUNDS = 5
BOOTSTRAP_SAMPLES = 1000
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
# Each figure with a range: its low and high columns in the CSV.
RANGED = ("macro_f1", "train_samples_per_second", "inference_texts_per_second")
CSV_COLUMNS = [
    *COLUMNS,
    *(f"{key}_{end}" for key in RANGED for end in ("low", "high")),
    "notes",
]


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
        stats = result.stats
        low, high = _f1_interval(result.run_dir / "predictions.csv")
        row |= {
            "macro_f1": result.report["macro avg"]["f1-score"],
            "macro_f1_low": low,
            "macro_f1_high": high,
            "accuracy": result.report["accuracy"],
            "train_samples_per_second": stats.get("steady_samples_per_second"),
            "train_samples_per_second_low": stats.get("steady_low"),
            "train_samples_per_second_high": stats.get("steady_high"),
            "parameters": stats.get("parameters"),
            "wall_seconds": time.perf_counter() - started,
            "export": str(result.saved_model_dir),
            "predictions": str(result.run_dir / "predictions.csv"),
            "notes": {},
        }
        if row["train_samples_per_second"] is None:
            row["notes"]["train_samples_per_second"] = (
                "too few training steps after the first to time; give more data or epochs"
            )
        if result.token_ids_only_reason:
            row["notes"]["inference_texts_per_second"] = (
                f"not timed: the export takes token ids, not text ({result.token_ids_only_reason})"
            )
        atomic.write_text(row_path, json.dumps(row, indent=2) + "\n")
        rows.append(row)
    time_inference(rows)
    write_comparison(rows, folder)
    return rows


def time_inference(rows: list[dict], rounds: int = INFERENCE_ROUNDS) -> None:
    """Times every run's export on the same raw texts, in rounds of rotating order.

    Each round times every model once on up to `INFERENCE_TEXTS` texts; the next
    round starts one model later, so no model is always timed first or after the
    same one. Sets each row's median texts/s and its range over the rounds, or a note
    saying why its export is not timed.
    """
    from tf_finetune.errors import ExportError
    from tf_finetune.serving import prediction

    models = {}
    for row in rows:
        if row.get("error") or "export" not in row:
            continue
        if "inference_texts_per_second" in row.get("notes", {}):
            continue
        try:
            models[row["run"]] = prediction.ExportedModel(row["export"])
        except ExportError as error:
            row["notes"]["inference_texts_per_second"] = f"not timed: {error}"
    if not models:
        return
    first = next(row for row in rows if row["run"] in models)
    with open(first["predictions"], newline="", encoding="utf-8") as handle:
        texts = [row["text"] for row in itertools.islice(csv.DictReader(handle), INFERENCE_TEXTS)]
    batches = [texts[i : i + INFERENCE_BATCH] for i in range(0, len(texts), INFERENCE_BATCH)]
    for model in models.values():
        model.predict(batches[0])  # the first call traces the signature
    names = list(models)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            started = time.perf_counter()
            for batch in batches:
                models[name].predict(batch)
            rates[name].append(len(texts) / (time.perf_counter() - started))
    for row in rows:
        if row["run"] in rates:
            row["inference_texts_per_second"] = statistics.median(rates[row["run"]])
            row["inference_texts_per_second_low"] = min(rates[row["run"]])
            row["inference_texts_per_second_high"] = max(rates[row["run"]])


def _f1_interval(predictions: Path) -> tuple[float, float]:
    """Macro F1 of a predictions file with its 95% bootstrap interval over the examples.

    A multi-label run's file (its `labels` and `predicted` columns hold sets) gets the
    macro F1 over its labels of each resample.
    """
    import numpy as np

    with predictions.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    samples = np.random.default_rng(0).integers(0, len(rows), (BOOTSTRAP_SAMPLES, len(rows)))
    if rows and "labels" in rows[0]:
        true, predicted = (_label_rows(rows, column) for column in ("labels", "predicted"))
        scores = _multi_label_macro_f1(true[samples], predicted[samples])
    else:
        pairs = [(row["label"], row["predicted"]) for row in rows]
        names = sorted({name for pair in pairs for name in pair})
        index = {name: i for i, name in enumerate(names)}
        true = np.array([index[t] for t, _ in pairs])
        predicted = np.array([index[p] for _, p in pairs])
        scores = _macro_f1(true[samples], predicted[samples], len(names))
    low, high = np.percentile(scores, [2.5, 97.5])
    return float(low), float(high)


def _label_rows(rows: list[dict], column: str):
    """A predictions file's label sets as 0/1 rows over the file's label columns."""
    import numpy as np

    names = [key[2:] for key in rows[0] if key.startswith("p_")]
    sets = [set(filter(None, row[column].split("|"))) for row in rows]
    return np.array([[name in labels for name in names] for labels in sets])


def _multi_label_macro_f1(true, predicted):
    """Macro F1 over the labels of each resample `[samples, examples, labels]`, labels
    absent from both skipped."""
    import numpy as np

    hits = (true & predicted).sum(axis=1)
    total = true.sum(axis=1) + predicted.sum(axis=1)
    f1 = np.where(total > 0, 2 * hits / np.maximum(total, 1), 0.0)
    present = total > 0
    return f1.sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def _macro_f1(true, predicted, classes: int):
    """Macro F1 of each row of `true` and `predicted` (classes absent from both skipped)."""
    import numpy as np

    scores = np.zeros(len(true))
    present = np.zeros(len(true))
    for label in range(classes):
        is_true, is_predicted = true == label, predicted == label
        hits = (is_true & is_predicted).sum(axis=1)
        total = is_true.sum(axis=1) + is_predicted.sum(axis=1)
        scores += np.where(total > 0, 2 * hits / np.maximum(total, 1), 0.0)
        present += is_true.any(axis=1) | is_predicted.any(axis=1)
    return scores / np.maximum(present, 1)


def write_comparison(rows: list[dict], folder: Path) -> None:
    """Writes `comparison.md`, `comparison.csv` and `comparison.png` into `folder`."""
    from tf_finetune.evaluation import plots

    folder.mkdir(parents=True, exist_ok=True)
    with atomic.staged_files(folder) as staging:
        with (staging / "comparison.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            for row in rows:
                cells = {key: row.get(key, "") for key in CSV_COLUMNS}
                cells["notes"] = "; ".join(f"{COLUMNS[k]}: {v}" for k, v in _notes(row).items())
                writer.writerow(cells)
        (staging / "comparison.md").write_text(markdown_table(rows), encoding="utf-8")
        plots.comparison_png(rows, staging / "comparison.png")


def markdown_table(rows: list[dict]) -> str:
    """Returns the comparison as a Markdown table, which run is best at what, and why
    any cell is "-"."""
    shown = [key for key in COLUMNS if key != "error" or any(row.get("error") for row in rows)]
    lines = [
        "| " + " | ".join(COLUMNS[key] for key in shown) + " |",
        "|" + "---|" * len(shown),
    ]
    for row in rows:
        lines.append("| " + " | ".join(_ranged_cell(key, row) for key in shown) + " |")
    lines.append("")
    for key, what in (
        ("macro_f1", "Best macro F1"),
        ("train_samples_per_second", "Fastest training"),
        ("inference_texts_per_second", "Fastest inference"),
    ):
        claim = _claim(rows, key, what)
        if claim:
            lines.append(claim)
    notes = [
        f"- {row['run']}, {COLUMNS[key]}: {note}."
        for row in rows
        for key, note in _notes(row).items()
    ]
    if notes:
        lines += ["", 'Why a cell is "-":', *notes]
    return "\n".join(lines) + "\n"


def _claim(rows: list[dict], key: str, what: str) -> str | None:
    """Names the best run at `key`, or the runs that tie with it (their ranges overlap)."""
    scored = sorted((row for row in rows if row.get(key) is not None), key=lambda row: -row[key])
    if not scored:
        return None
    best = scored[0]
    floor = best.get(f"{key}_low", best[key])
    tied = [row for row in scored[1:] if row.get(f"{key}_high", row[key]) >= floor]
    if tied:
        names = ", ".join(f"**{row['run']}** ({_ranged_cell(key, row)})" for row in [best, *tied])
        return f"- {what}: a tie between {names}: their ranges overlap."
    return f"- {what}: **{best['run']}** ({_ranged_cell(key, best)})."


def _notes(row: dict) -> dict[str, str]:
    """Why each "-" of a row is there (a failed run's are explained by its error)."""
    if row.get("error"):
        return {}
    notes = dict(row.get("notes") or {})
    for key in COLUMNS:
        if key != "error" and row.get(key) is None and key not in notes:
            notes[key] = (
                "not timed: the run was reused from an earlier version's comparison"
                if key == "inference_texts_per_second"
                else "not recorded"
            )
    return notes


def _ranged_cell(key: str, row: dict) -> str:
    value = _cell(key, row.get(key))
    low, high = row.get(f"{key}_low"), row.get(f"{key}_high")
    if value == "-" or low is None or high is None:
        return value
    return f"{value} ({_cell(key, low)}-{_cell(key, high)})"


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
