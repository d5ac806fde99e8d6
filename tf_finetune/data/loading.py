"""Loading the text classification data of a run into canonical splits.

Whatever the source (a Hub dataset, local files, a packaged dataset), the result has
splits `train`, `validation` and maybe `test`, each with the columns `text`,
`text_pair` (for pairs only) and `labels` (class ids).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import uuid
from pathlib import Path

import datasets
import pyarrow
import pyarrow.compute
from sklearn.model_selection import train_test_split

from tf_finetune.config import FitConfig
from tf_finetune.data import files, label_sets, labels, packaged
from tf_finetune.errors import DataError, first_line

logger = logging.getLogger(__name__)

_VALIDATION_NAMES = ("validation", "valid", "dev")
_FRAME_ROWS = 50_000  # rows of a data file read and checked at a time


@dataclasses.dataclass
class TextClassificationData:
    """Canonical splits and the label names of a run.

    Attributes:
        splits: `train`, `validation` and optionally `test`, with columns `text`,
            optionally `text_pair`, and `labels`.
        label_names: Label names in class-id order.
        has_text_pair: Whether examples are pairs of texts.
        multi_label: Whether an example has a set of labels (`labels` is a 0/1 row).
    """

    splits: datasets.DatasetDict
    label_names: list[str]
    has_text_pair: bool
    multi_label: bool = False

    @property
    def eval_split(self) -> str:
        """The split of the final report: test when there is one, else validation."""
        return "test" if "test" in self.splits else "validation"


@dataclasses.dataclass
class _RawSplit:
    dataset: datasets.Dataset
    source: str


def load_data(config: FitConfig) -> TextClassificationData:
    """Loads, checks and canonicalises the splits that `config` names.

    Raises:
        DataError: A file, column, row or label cannot be used, or the Hub is unreachable.
    """
    raw, class_names = _load_raw(config)
    _check_columns(raw, config)
    train = raw["train"]
    if _is_multi_label(config, train):
        names, splits = _label_sets(raw, config, class_names)
    else:
        train_labels = train.dataset[config.label_column][:]
        label_source = f"{train.source}, column {config.label_column!r}"
        names = labels.infer_label_names(train_labels, label_source, class_names)
        ids = labels.labels_are_ids(train_labels, class_names)
        if len(names) < 2:
            raise DataError(
                f"{label_source} has a single label {names[0]!r}. Classification needs at "
                "least two classes."
            )
        splits = {name: _canonical(split, config, names, ids) for name, split in raw.items()}
    if "validation" not in splits:
        splits["train"], splits["validation"] = _carve_validation(
            splits["train"], config.validation_split, config.seed
        )
    splits = _subsample(splits, config)
    for name, split in splits.items():
        if len(split) == 0:
            raise DataError(f"The {name} split has no rows. Give it data or remove it.")
    logger.info(
        "Data: %s; %d labels (%s).",
        ", ".join(f"{name} {len(split)}" for name, split in splits.items()),
        len(names),
        ", ".join(names),
    )
    return TextClassificationData(
        splits=datasets.DatasetDict(splits),
        label_names=names,
        has_text_pair=config.text_pair_column is not None,
        multi_label=_is_multi_label(config, train),
    )


def _is_multi_label(config: FitConfig, train: _RawSplit) -> bool:
    """Whether the run is multi-label: asked for, or (auto) label sets in the data."""
    if config.problem != "auto":
        return config.problem == "multi_label"
    if config.label_separator is not None or config.label_columns is not None:
        return True
    feature = train.dataset.features.get(config.label_column)
    if isinstance(feature, datasets.Sequence | list):
        return True
    return pyarrow.types.is_list(train.dataset.with_format("arrow")[config.label_column].type)


def _label_sets(raw: dict[str, _RawSplit], config: FitConfig, class_names):
    """The label names and the canonical splits of multi-label data."""
    sets = {}
    for name, split in raw.items():
        if config.label_columns is not None:
            columns = _label_column_names(config)
            source = split.source
            values = {column: split.dataset[column][:] for column in columns}
            sets[name] = label_sets.from_columns(values, source)
        else:
            source = f"{split.source}, column {config.label_column!r}"
            values = split.dataset[config.label_column][:]
            if class_names is not None:  # a Hub Sequence(ClassLabel): lists of ids
                values = [[class_names[i] for i in row] for row in values]
            sets[name] = label_sets.from_cells(values, source, config.label_separator)
        label_sets.check_not_empty(sets[name], source, config.allow_empty_labels)
    train_source = raw["train"].source
    if config.label_columns is not None:
        names = _label_column_names(config)
    elif class_names is not None:
        names = list(class_names)
    else:
        names = label_sets.names_of(sets["train"], train_source)
    splits = {}
    for name, split in raw.items():
        rows = label_sets.multi_hot(sets[name], names, split.source)
        columns = {"text": _texts(split, config.text_column)}
        if config.text_pair_column:
            columns["text_pair"] = _texts(split, config.text_pair_column)
        columns["labels"] = pyarrow.array(list(rows), pyarrow.list_(pyarrow.int8()))
        splits[name] = _dataset(pyarrow.table(columns))
    return names, splits


def _label_column_names(config: FitConfig) -> list[str]:
    return [c.strip() for c in config.label_columns.split(",") if c.strip()]


def _load_raw(config: FitConfig) -> tuple[dict[str, _RawSplit], list[str] | None]:
    if config.train_file is not None:
        files = {
            "train": config.train_file,
            "validation": config.validation_file,
            "test": config.test_file,
        }
        raw = {name: _file_split(path, config) for name, path in files.items() if path is not None}
        return raw, None
    if packaged.is_packaged(config.dataset):
        frames = packaged.load_dataset_splits(config.dataset, config.seed)
        raw = {
            name: _RawSplit(
                datasets.Dataset.from_pandas(frame, preserve_index=False),
                f"{config.dataset} {name}",
            )
            for name, frame in frames.items()
        }
        return raw, None
    return _load_hub(config)


def _file_split(path: str, config: FitConfig) -> _RawSplit:
    """Reads a data file's text and label columns, checking every cell with its row.

    The file is read in chunks of `_FRAME_ROWS` rows, each checked and turned into
    Arrow before the next is read, so a large file is held once, as Arrow.
    """
    label_columns = _label_columns(config)
    texts = {column: [] for column in _wanted(config) if column not in label_columns}
    values = {column: [] for column in label_columns}
    for chunk_texts, frame in _file_chunks(path, config):
        for column, chunks in texts.items():
            chunks.append(chunk_texts[column])
        for column, cells in values.items():
            cells += _label_cells(frame, column, path, config)
    if not values[label_columns[0]]:
        raise DataError(f"{path} has no data rows.")
    columns = {column: pyarrow.chunked_array(chunks) for column, chunks in texts.items()}
    for column, cells in values.items():
        if files.file_format(Path(path)) in files.TEXT_FORMATS:
            cells = labels.parse_ids(cells)
        try:
            columns[column] = pyarrow.chunked_array([pyarrow.array(cells)])
        except (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError) as error:
            raise DataError(
                f"{path}: column {column!r} mixes kinds of value ({first_line(error)}). "
                "Write every label the same way, e.g. all as strings."
            ) from None
    return _RawSplit(_dataset(pyarrow.table(columns)), str(path))


def _label_columns(config: FitConfig) -> list[str]:
    """The columns that hold the labels: the label column, or the 0/1 columns."""
    if config.label_columns is not None:
        return _label_column_names(config)
    return [config.label_column]


def _wanted(config: FitConfig) -> dict[str, str]:
    """The columns a run reads, each with the option that names it."""
    wanted = {config.text_column: "--text-column"}
    if config.label_columns is not None:
        wanted |= {column: "--label-columns" for column in _label_column_names(config)}
    else:
        wanted[config.label_column] = "--label-column"
    if config.text_pair_column:
        wanted[config.text_pair_column] = "--text-pair-column"
    return wanted


def _file_chunks(path: str, config: FitConfig):
    """Yields a data file chunk by chunk: its checked texts as Arrow, and its labels' frame.

    Parquet's text columns go straight from the file to Arrow; other formats' cells
    pass through a data frame of `_FRAME_ROWS` rows.
    """
    wanted = _wanted(config)
    label_columns = _label_columns(config)
    text_columns = [column for column in wanted if column not in label_columns]
    files.check_file(Path(path))  # a missing file or a folder, before its name's format
    if files.file_format(Path(path)) == "parquet":
        _require_columns(path, wanted, files.parquet_columns(path))
        start = 0
        for batch in files.parquet_batches(path, _FRAME_ROWS, list(wanted)):
            yield (
                {c: files.text_array(batch.column(c), c, path, start) for c in text_columns},
                files.as_frame(batch.select(label_columns), start),
            )
            start += batch.num_rows
        return
    for frame in files.iter_table(path, _FRAME_ROWS):
        _require_columns(path, wanted, frame.columns)
        yield (
            {
                c: pyarrow.array(files.text_cells(frame, c, path), pyarrow.string())
                for c in text_columns
            },
            frame,
        )


def _require_columns(source, wanted: dict[str, str], found) -> None:
    for column, option in wanted.items():
        if column not in found:
            raise DataError(_missing_column(source, column, found, option))


def _label_cells(frame, column: str, source, config: FitConfig) -> list:
    """A chunk's label cells, each checked: present (unless labels may be empty), and a
    single value unless the data may be multi-label."""
    values = []
    for label, value in frame[column].items():
        missing = _is_missing(value)
        many = label_sets.is_set(value)
        if many and config.problem != "single_label":
            value = list(value)
        elif (missing and not config.allow_empty_labels) or many or isinstance(value, dict):
            problem = "the label is missing" if missing else "the label is not a single value"
            raise DataError(
                f"{source}, {files.describe_row(frame, label)}: {problem} (column "
                f"{column!r}). Fill it in or remove the row."
            )
        values.append(None if missing else value)
    return values


def _is_missing(value) -> bool:
    return not label_sets.is_set(value) and (files.is_missing(value) or value == "")


def _missing_column(source, column: str, found, option: str) -> str:
    return (
        f"{source} has no column {column!r}. Columns found: {', '.join(map(str, found))}. "
        f"Choose one with {option}."
    )


def _load_hub(config: FitConfig) -> tuple[dict[str, _RawSplit], list[str] | None]:
    name = config.dataset
    try:
        loaded = datasets.load_dataset(name, config.dataset_config)
    except Exception as error:  # the Hub raises many types; all mean "cannot load it"
        raise DataError(
            f"Cannot load dataset {name!r} from the Hugging Face Hub ({first_line(error)}). "
            "Check the name and the network (HF_HUB_OFFLINE=1 forbids downloads), "
            "or pass local files with --train-file."
        ) from None
    if "train" not in loaded:
        raise DataError(f"Dataset {name!r} has no 'train' split (it has {', '.join(loaded)}).")
    raw = {"train": _RawSplit(loaded["train"], f"{name} train")}
    for candidate in _VALIDATION_NAMES:
        if candidate in loaded:
            raw["validation"] = _RawSplit(loaded[candidate], f"{name} {candidate}")
            break
    if "test" in loaded:
        test = loaded["test"]
        hidden = config.label_column in test.column_names and not isinstance(
            test.features.get(config.label_column), datasets.Sequence
        )
        if hidden and set(test[config.label_column]) == {-1}:
            # GLUE-style test splits hide their labels as -1; they cannot be scored.
            logger.warning("Dataset %r hides its test labels; reporting on validation.", name)
        else:
            raw["test"] = _RawSplit(test, f"{name} test")
    feature = loaded["train"].features.get(config.label_column)
    if isinstance(feature, datasets.Sequence):  # multi-label: a list of class ids
        feature = feature.feature
    class_names = feature.names if isinstance(feature, datasets.ClassLabel) else None
    return raw, class_names


def _check_columns(raw: dict[str, _RawSplit], config: FitConfig) -> None:
    for split in raw.values():
        _require_columns(split.source, _wanted(config), split.dataset.column_names)


def _canonical(split: _RawSplit, config: FitConfig, names: list[str], ids: bool):
    """The split as `text`, `text_pair` and `labels` columns, sharing the texts' Arrow data."""
    columns = {"text": _texts(split, config.text_column)}
    if config.text_pair_column:
        columns["text_pair"] = _texts(split, config.text_pair_column)
    label_source = f"{split.source}, column {config.label_column!r}"
    encoded = labels.encode_labels(split.dataset[config.label_column][:], names, label_source, ids)
    columns["labels"] = pyarrow.array(encoded, pyarrow.int64())
    return _dataset(pyarrow.table(columns))


def _dataset(table: pyarrow.Table) -> datasets.Dataset:
    """A dataset over `table`, without copying it.

    Given no fingerprint, `datasets` makes one by hashing the whole table, which holds
    a second copy of every text while it runs (gigabytes at yelp_review_full's size).
    The token cache keys splits by their content itself, so any unique name will do.
    """
    return datasets.Dataset(datasets.table.InMemoryTable(table), fingerprint=uuid.uuid4().hex)


def _texts(split: _RawSplit, column: str) -> pyarrow.ChunkedArray:
    """A text column as Arrow strings, refusing missing cells; not copied when it is text."""
    texts = split.dataset.with_format("arrow")[column]
    if pyarrow.types.is_string(texts.type) or pyarrow.types.is_large_string(texts.type):
        if texts.null_count:
            row = pyarrow.compute.index(texts.is_null(), True).as_py()
            raise DataError(_missing_text(split, column, row))
        return texts
    values = texts.to_pylist()
    for row, text in enumerate(values):
        if text is None or (isinstance(text, float) and math.isnan(text)):
            raise DataError(_missing_text(split, column, row))
    # Numbers in a text column are text; empty strings are kept and tokenize to
    # the special tokens only.
    return pyarrow.chunked_array([pyarrow.array([str(t) for t in values], pyarrow.string())])


def _missing_text(split: _RawSplit, column: str, row: int) -> str:
    return (
        f"{split.source}, data row {row + 1}: column {column!r} is missing. "
        "Fill it in or remove the row."
    )


def _carve_validation(train: datasets.Dataset, share: float, seed: int):
    """Splits train into train and validation, stratified by label where possible."""
    indices = list(range(len(train)))
    targets = train["labels"]
    try:
        kept, held = train_test_split(indices, test_size=share, stratify=targets, random_state=seed)
    except ValueError:
        # A class with a single example cannot be stratified.
        logger.warning("A class is too small to stratify; carving validation at random.")
        kept, held = train_test_split(indices, test_size=share, random_state=seed)
    logger.info("No validation split: held out %d of %d training rows.", len(held), len(train))
    return train.select(sorted(kept)), train.select(sorted(held))


def _subsample(splits: dict[str, datasets.Dataset], config: FitConfig):
    limits = {
        "train": config.max_train_samples,
        "validation": config.max_eval_samples,
        "test": config.max_eval_samples,
    }
    out = {}
    for name, split in splits.items():
        limit = limits[name]
        if limit is not None and limit < len(split):
            # The tutorial's subset recipe: shuffle(seed).select(range(n)).
            split = split.shuffle(seed=config.seed).select(range(limit))
        out[name] = split
    return out


def describe_source(config: FitConfig) -> str:
    """Returns a short name of the data source, for run names."""
    if config.train_file is not None:
        return Path(config.train_file).name.split(".")[0]
    return (config.dataset or "data").split(":")[-1].split("/")[-1]
