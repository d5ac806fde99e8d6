"""Predicting and reporting from an exported SavedModel alone.

Only TensorFlow is needed to run the model: the export tokenizes raw text itself.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from google.protobuf.message import DecodeError

from tf_finetune.data import files, label_sets
from tf_finetune.errors import (
    ConfigError,
    DataError,
    ExportError,
    TfFinetuneError,
    first_line,
    short_reason,
)
from tf_finetune.evaluation import multi_label
from tf_finetune.runtime import atomic

logger = logging.getLogger(__name__)

OUTPUT_FORMATS = (".csv", ".jsonl")
INPUT_FORMATS = ("csv", "tsv", "jsonl", "txt")
# The input path that means standard input.
STDIN = "-"


class ExportedModel:
    """A raw-text SavedModel loaded for prediction.

    Args:
        path: A SavedModel version folder, or a folder of versions (a run directory, a
            TensorFlow Serving model base path), whose highest version is used.

    Raises:
        ExportError: There is no SavedModel there, or it does not take raw text.
    """

    def __init__(self, path: str | Path):
        import tensorflow as tf

        self.path = _version_folder(Path(path))
        self._tf = tf
        try:
            loaded = tf.saved_model.load(str(self.path))
            self._signature = loaded.signatures["serving_default"]
        except (tf.errors.OpError, OSError, ValueError, KeyError, DecodeError) as error:
            raise ExportError(
                f"The SavedModel at {self.path} cannot be loaded ({first_line(error)}): it is "
                "damaged or incomplete. Export it again, e.g. with tf-finetune fit --resume "
                "on its run."
            ) from None
        inputs = self._signature.structured_input_signature[1]
        if "text" not in inputs:
            raise ExportError(
                f"The SavedModel at {self.path} takes token ids, not raw text (its tokenizer "
                "cannot run in the graph). Tokenize with the run's tokenizer and call its "
                "'token_ids' signature instead."
            )
        self.takes_pair = "text_pair" in inputs
        self.label_names = [name.decode() for name in loaded.label_names.numpy()]
        # Exports from before truncation strategies have neither; they cut the head.
        cut = hasattr(loaded, "truncation")
        self.max_length = int(loaded.max_length.numpy()) if cut else None
        self.truncation = loaded.truncation.numpy().decode() if cut else None
        self.stride = int(loaded.stride.numpy()) if hasattr(loaded, "stride") else None
        # A multi-label export holds each label's decision threshold.
        self.multi_label = hasattr(loaded, "thresholds")
        self.thresholds = loaded.thresholds.numpy().tolist() if self.multi_label else None
        self._loaded = loaded  # keeps the signature's variables alive

    def predict(self, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
        """Returns class probabilities `[len(texts), classes]` (multi-label: each label's)."""
        return self.run(texts, pairs)["scores"]

    def labels(self, scores: np.ndarray) -> list[str]:
        """Each row's predicted label; multi-label: its set, the names joined by "|"."""
        if self.multi_label:
            chosen = multi_label.predicted(scores, self.thresholds)
            return [multi_label.label_set(row, self.label_names) for row in chosen]
        return [self.label_names[int(i)] for i in scores.argmax(axis=-1)]

    def run(self, texts: list[str], pairs: list[str] | None = None) -> dict[str, np.ndarray]:
        """Returns the raw-text signature's outputs: `scores`, and `truncated` where the
        export says which texts were cut to its `max_length`."""
        if not texts:
            return {"scores": np.zeros((0, len(self.label_names)), np.float32)}
        inputs = {"text": self._tf.constant(texts, self._tf.string)}
        if self.takes_pair:
            if pairs is None:
                raise DataError("This model was trained on text pairs; give the second texts.")
            inputs["text_pair"] = self._tf.constant(pairs, self._tf.string)
        return {name: value.numpy() for name, value in self._signature(**inputs).items()}


def _version_folder(path: Path) -> Path:
    if (path / "saved_model.pb").is_file():
        return path
    versions = (
        sorted(
            (p for p in path.glob("*") if p.name.isdigit() and (p / "saved_model.pb").is_file()),
            key=lambda p: int(p.name),
        )
        if path.is_dir()
        else []
    )
    if not versions:
        raise ExportError(
            f"No SavedModel in {path}. Pass a run directory or a SavedModel version folder."
        )
    return versions[-1]


def iter_batches(
    path: str | Path,
    text_column: str,
    pair_column: str | None = None,
    label_column: str | None = None,
    batch_size: int = 64,
    input_format: str | None = None,
    label_columns: list[str] | None = None,
) -> Iterator[pd.DataFrame]:
    """Reads a .csv, .tsv, .jsonl or .txt file in batches of rows, without loading it whole.

    A .txt file holds one text per line, in the column `text_column`. Nothing is read
    before the first batch is asked for.

    Args:
        path: The file, or "-" for standard input (read to its end first).
        text_column: Column of the texts.
        pair_column: Column of the second texts, for pair models.
        label_column: Column of the true labels, for reports.
        batch_size: Rows per batch.
        input_format: One of `INPUT_FORMATS`; by default the file name's suffix tells,
            and standard input is one text per line.
        label_columns: A multi-label model's 0/1 columns, one per label, for reports.

    Raises:
        DataError: The file cannot be read or lacks a column.
    """
    if str(path) == STDIN:
        yield from _stdin_batches(
            text_column, pair_column, label_column, batch_size, input_format or "txt"
        )
        return
    path = Path(path)
    kind = input_format or ("txt" if path.suffix.lower() == ".txt" else None)
    files.check_file(path, "Input file")
    wanted = [c for c in (text_column, pair_column, label_column) if c] + (label_columns or [])
    if kind == "txt":
        yield from _text_lines(path, text_column, batch_size)
        return
    for chunk in files.iter_table(path, batch_size, kind):
        missing = [c for c in wanted if c not in chunk.columns]
        if missing:
            raise DataError(
                f"{path} has no column {missing[0]!r}. Columns found: "
                f"{', '.join(map(str, chunk.columns))}. Choose one with the column options."
            )
        yield chunk


def _stdin_batches(text_column, pair_column, label_column, batch_size, input_format):
    """Copies standard input to a temporary file, then reads it like a file."""
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tf-finetune-stdin-") as folder:
        copy = Path(folder) / f"stdin.{input_format}"
        with copy.open("wb") as handle:
            shutil.copyfileobj(sys.stdin.buffer, handle)
        try:
            yield from iter_batches(
                copy, text_column, pair_column, label_column, batch_size, input_format
            )
        except DataError as error:
            raise DataError(str(error).replace(str(copy), "standard input")) from None


def estimate_rows(path: str | Path) -> int | None:
    """Counts the lines of a text data file, for a progress bar; None for binary formats.

    A quoted CSV cell that spans lines makes this an overestimate.
    """
    if str(path) == STDIN:
        return None
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".jsonl", ".txt") or not path.is_file():
        return None
    with path.open("rb") as handle:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    header = 1 if suffix in (".csv", ".tsv") else 0
    return max(lines - header, 0)


def _text_lines(path: Path, column: str, batch_size: int) -> Iterator[pd.DataFrame]:
    with files.reading(path, "txt"), path.open(encoding="utf-8-sig") as handle:
        batch = []
        for line in handle:
            batch.append(line.rstrip("\r\n"))
            if len(batch) == batch_size:
                yield pd.DataFrame({column: batch})
                batch = []
        if batch:
            yield pd.DataFrame({column: batch})


def predict(
    model_dir: str | Path,
    output,
    *,
    texts: list[str] | None = None,
    input_file: str | Path | None = None,
    input_format: str | None = None,
    text_column: str = "text",
    pair_column: str | None = None,
    batch_size: int = 64,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Classifies `texts` or the rows of `input_file` with an export; what `predict` runs.

    Args:
        model_dir: A run directory or SavedModel version folder.
        output: A `.csv` or `.jsonl` path, replaced only once every prediction is
            written, or an open text stream (CSV).
        texts: Texts to classify, instead of `input_file`.
        input_file: A .csv, .tsv, .jsonl or .txt file, or "-" for standard input.
        input_format: The input's format when its name does not tell (`INPUT_FORMATS`).
        text_column: Column of the texts.
        pair_column: Column of the second texts, for pair models.
        batch_size: Texts per call of the model.
        on_batch: Called with the number of rows of each batch written.

    Returns:
        The number of predictions written.

    Raises:
        DataError: The input cannot be read; a path `output` is then left as it was.
        ExportError: The SavedModel cannot be loaded, or `output` cannot be written.
    """
    model = ExportedModel(model_dir)
    if texts is not None:
        batches = iter([pd.DataFrame({text_column: list(texts)})])
        source = "--text"
    else:
        batches = iter_batches(
            input_file, text_column, pair_column, batch_size=batch_size, input_format=input_format
        )
        source = "standard input" if str(input_file) == STDIN else str(input_file)
    if not isinstance(output, str | Path):  # an open stream
        return predict_file(
            model, batches, output, ".csv", text_column, pair_column, on_batch, source
        )
    path = Path(output)
    try:
        with atomic.replaced_file(path) as handle:
            return predict_file(
                model,
                batches,
                handle,
                path.suffix.lower(),
                text_column,
                pair_column,
                on_batch,
                source,
            )
    except OSError as error:
        raise ExportError(
            f"Cannot write {path}: {short_reason(error)}. {path} was left as it was."
        ) from None
    except TfFinetuneError as error:  # bad input, or stopped by a signal
        error.args = (f"{first_line(error)}. {path} was left as it was.",)
        raise


def report(
    model_dir: str | Path,
    data_file: str | Path,
    output_dir: str | Path | None = None,
    *,
    text_column: str = "text",
    label_column: str = "label",
    pair_column: str | None = None,
    batch_size: int = 64,
    on_batch: Callable[[int], None] | None = None,
    label_separator: str = multi_label.SEPARATOR,
    label_columns: list[str] | None = None,
) -> tuple[dict, Path]:
    """Scores an export on a labelled file and writes the report folder; what `report` runs.

    Args:
        model_dir: A run directory or SavedModel version folder.
        data_file: A labelled .csv, .tsv, .jsonl, .json or .parquet file.
        output_dir: The report folder, which must not exist [default:
            `<model_dir>/reports/<data file name>`].
        text_column: Column of the texts.
        label_column: Column of the true labels.
        pair_column: Column of the second texts, for pair models.
        batch_size: Texts per call of the model.
        on_batch: Called with the number of rows of each batch scored.
        label_separator: For a multi-label model: what joins the labels of a string
            cell (a JSON list needs none).
        label_columns: For a multi-label model: 0/1 columns, one per label, named for
            it, instead of `label_column`.

    Returns:
        `report_file`'s result and the folder written.
    """
    if label_column in (text_column, pair_column):
        raise ConfigError(
            f"The label column {label_column!r} is also a text column. Give each its own."
        )
    model = ExportedModel(model_dir)
    if label_columns and not model.multi_label:
        raise ConfigError(
            "--label-columns gives multi-label data, and this model has one label per "
            "example. Give its labels with --label-column."
        )
    batches = iter_batches(
        data_file,
        text_column,
        pair_column,
        None if label_columns else label_column,
        batch_size,
        label_columns=label_columns,
    )
    result = report_file(
        model,
        batches,
        text_column,
        label_column,
        pair_column,
        str(data_file),
        on_batch,
        label_separator,
        label_columns,
    )
    name = Path(data_file).name.split(".")[0]
    directory = Path(output_dir) if output_dir else Path(model_dir) / "reports" / name
    return result, write_report_dir(result, directory)


def predict_file(
    model: ExportedModel,
    batches: Iterator[pd.DataFrame],
    output,
    output_format: str,
    text_column: str,
    pair_column: str | None = None,
    on_batch: Callable[[int], None] | None = None,
    source: str = "the input",
) -> int:
    """Writes the label and every class probability of each input row to `output`.

    Args:
        model: The loaded export.
        batches: From `iter_batches`.
        output: A text stream.
        output_format: ".csv" or ".jsonl".
        text_column: Column of the texts.
        pair_column: Column of the second texts, for pair models.
        on_batch: Called with the number of rows of each batch written.
        source: The input's name, for error messages.

    Returns:
        The number of rows written.

    Raises:
        DataError: A row has no text (a missing JSON key or null), naming its line.
    """
    names = model.label_names
    writer = csv.writer(output) if output_format == ".csv" else None
    header = ["text", "labels" if model.multi_label else "label", *(f"p_{n}" for n in names)]
    count = 0
    for chunk in batches:
        texts = files.text_cells(chunk, text_column, source)
        pairs = files.text_cells(chunk, pair_column, source) if pair_column else None
        scores = model.predict(texts, pairs)
        if writer and header:
            # Written only once the input has been read: a bad input leaves no output.
            writer.writerow(header)
            header = None
        for text, row, label in zip(texts, scores, model.labels(scores), strict=True):
            if writer:
                writer.writerow([text, label, *(f"{p:.6f}" for p in row)])
            else:
                record = {
                    "text": text,
                    "label": label,
                    "scores": {n: round(float(p), 6) for n, p in zip(names, row, strict=True)},
                }
                output.write(json.dumps(record, ensure_ascii=False) + "\n")
        count += len(texts)
        if on_batch:
            on_batch(len(texts))
    if writer and header:
        writer.writerow(header)
    return count


def report_file(
    model: ExportedModel,
    batches: Iterator[pd.DataFrame],
    text_column: str,
    label_column: str,
    pair_column: str | None,
    source: str,
    on_batch: Callable[[int], None] | None = None,
    label_separator: str = multi_label.SEPARATOR,
    label_columns: list[str] | None = None,
) -> dict:
    """Scores a labelled file with the export.

    A multi-label model's labels are lists (JSON), strings joined by
    `label_separator`, or 0/1 `label_columns`.

    Returns:
        `report` (scikit-learn's dict plus `confusion_matrix` and `labels`), `text`,
        `rows`, `thresholds` (a multi-label model's) and `misclassified` (the `texts`,
        `y_true` and `probabilities` of rows with a wrong label).

    Raises:
        DataError: A label is missing or unknown to the model.
    """
    from tf_finetune.evaluation import scoring

    texts, y_true, scores, truncated = [], [], [], 0
    for chunk in batches:
        y_true += _true_labels(model, chunk, label_column, source, label_separator, label_columns)
        chunk_texts = files.text_cells(chunk, text_column, source)
        pairs = files.text_cells(chunk, pair_column, source) if pair_column else None
        outputs = model.run(chunk_texts, pairs)
        scores.append(outputs["scores"])
        truncated += int(np.count_nonzero(outputs.get("truncated", 0)))
        texts += chunk_texts
        if on_batch:
            on_batch(len(chunk_texts))
    if not texts:
        raise DataError(f"{source} has no rows to score.")
    probabilities = np.concatenate(scores)
    names, thresholds = model.label_names, model.thresholds
    y_true = np.array(y_true)
    if model.multi_label:  # rows with a wrong label
        wrong = np.flatnonzero((multi_label.predicted(probabilities, thresholds) != y_true).any(1))
    else:
        wrong = np.flatnonzero(probabilities.argmax(axis=1) != y_true)
    report = scoring.build_report(y_true, probabilities, names, thresholds)
    text = scoring.format_report(y_true, probabilities, names, thresholds)
    if model.max_length is not None:
        report["truncated"] = {
            "texts": truncated,
            "of": len(texts),
            "max_length": model.max_length,
            "truncation": model.truncation,
            **({"stride": model.stride} if model.stride is not None else {}),
        }
        text += "\n" + scoring.describe_truncated(report["truncated"]) + "\n"
    return {
        "report": report,
        "text": text,
        "rows": len(texts),
        "thresholds": thresholds,
        "misclassified": {
            "texts": [texts[i] for i in wrong],
            "y_true": y_true[wrong],
            "probabilities": probabilities[wrong],
        },
    }


def _true_labels(model: ExportedModel, chunk, label_column, source, separator, columns) -> list:
    """A chunk's true labels: class ids, or for a multi-label model 0/1 rows.

    Multi-label cells are lists (JSON), strings of labels joined by `separator`, or
    0/1 `columns`, one per label.

    Raises:
        DataError: A label is missing or unknown to the model.
    """
    names = model.label_names
    if model.multi_label and columns:
        sets = label_sets.from_columns({c: chunk[c].tolist() for c in columns}, source)
        return list(label_sets.multi_hot(sets, names, source))
    if model.multi_label:
        cells = chunk[label_column].tolist()
        sets = label_sets.from_cells(cells, f"{source}, column {label_column!r}", separator)
        return list(label_sets.multi_hot(sets, names, source))
    labels = files.text_cells(chunk, label_column, source)
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted({v for v in labels if v not in index})
    if unknown:
        raise DataError(
            f"{source}, column {label_column!r} has labels the model does not know: "
            f"{', '.join(map(repr, unknown[:5]))}. The model's labels: {', '.join(names)}."
        )
    return [index[v] for v in labels]


def write_report_dir(result: dict, directory: Path) -> Path:
    """Writes report.json, report.txt, confusion_matrix.png and misclassified.csv.

    The folder is written under a temporary name beside `directory` and renamed when
    complete; an existing `directory` is never overwritten.

    Raises:
        ExportError: `directory` exists already.
    """
    from tf_finetune.evaluation import plots, scoring

    try:
        with atomic.staged_directory(directory) as staging:
            scoring.write_report(result["report"], result["text"], staging)
            plots.report_png(result["report"], staging / "confusion_matrix.png")
            wrong = result["misclassified"]
            scoring.write_predictions(
                staging / "misclassified.csv",
                wrong["texts"],
                wrong["y_true"],
                wrong["probabilities"],
                result["report"]["labels"],
                result.get("thresholds"),
            )
    except FileExistsError:
        raise ExportError(f"{directory} exists already. Choose another --output-dir.") from None
    except OSError as error:
        raise ExportError(
            f"Cannot write the report to {directory}: {short_reason(error)}. Choose "
            "another --output-dir, or fix the cause (disk space?)."
        ) from None
    return directory
