"""Reading local data files (CSV, TSV, JSON, JSON Lines, Parquet) into data frames.

Cells are read as written: every CSV, TSV and JSON value arrives as the text the file
holds ("0001" stays "0001", "1e3" stays "1e3", and "NA", "null", "None" and "nan" in a
CSV stay text), and an empty CSV cell is an empty string. Only a JSON `null` or a
missing JSON key is a missing value. Parquet columns keep their types.

Rows are located for error messages by `describe_row`: "line N" in JSON Lines, "data
row N" (not counting the header) in CSV and TSV, "record N" in a JSON array.
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import gzip
import io
import json
import lzma
import math
import zlib
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow
import pyarrow.compute
import pyarrow.parquet

from tf_finetune.errors import DataError, first_line, short_reason

_COMPRESSIONS = (".bz2", ".gz", ".xz")
FORMATS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".parquet": "parquet"}
# Formats whose values are text as written (Parquet's columns are typed).
TEXT_FORMATS = ("csv", "tsv", "json", "jsonl")
_SEPARATORS = {"csv": ",", "tsv": "\t"}
# Parquet is read through a buffered stream of this many bytes, page by page: without
# it a file written as one row group is decoded whole, then sliced, holding it twice.
_PARQUET_BUFFER = 1 << 20
# A damaged compressed file surfaces as one of these from the decompressor.
_CORRUPT = (EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile)


def file_format(path: Path) -> str:
    """Returns the format of a data file from its suffix, ignoring a compression suffix."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSIONS:
        suffixes = suffixes[:-1]
    suffix = suffixes[-1] if suffixes else ""
    if suffix not in FORMATS:
        raise DataError(
            f"Cannot tell the format of {path} from its name. "
            f"Rename it to end in one of {', '.join(FORMATS)}."
        )
    return FORMATS[suffix]


def check_file(path: Path, what: str = "Data file") -> None:
    """Raises a one-line `DataError` unless `path` is an existing regular file."""
    if path.is_dir():
        raise DataError(f"{what} {path} is a folder, not a file. Give the path of a file in it.")
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist. Check the path.")


def read_table(path: str | Path) -> pd.DataFrame:
    """Reads one data file into a data frame.

    Raises:
        DataError: The file is missing, unreadable, empty, malformed, truncated, not
            UTF-8, or has two columns of the same name.
    """
    path = Path(path)
    check_file(path)
    return _whole_table(path, file_format(path))


def _whole_table(path: Path, kind: str) -> pd.DataFrame:
    with reading(path, kind):
        frame = _read_whole(path, kind)
    if frame.empty:
        raise DataError(f"{path} has no data rows.")
    return frame


def iter_table(path: str | Path, rows: int, kind: str | None = None) -> Iterator[pd.DataFrame]:
    """Yields a data file in frames of at most `rows` rows.

    CSV, TSV, JSON Lines and Parquet are read chunk by chunk; JSON is read whole.

    Args:
        path: The file.
        rows: Rows per frame.
        kind: The format, when the name does not tell it (see `FORMATS`).

    Raises:
        DataError: As `read_table`.
    """
    path = Path(path)
    check_file(path)
    kind = kind or file_format(path)
    if kind == "json":
        frame = _whole_table(path, kind)
        for start in range(0, len(frame), rows):
            yield frame.iloc[start : start + rows]
        return
    with reading(path, kind):
        if kind == "parquet":
            yield from _parquet_frames(path, rows)
            return
        if kind == "jsonl":
            with _open_text(path) as handle:
                yield from _jsonl_frames(handle, path, rows)
            return
        _check_header(path, kind)
        with _read_csv(path, kind, chunksize=rows) as chunks:
            yield from chunks


def _parquet_frames(path: Path, rows: int) -> Iterator[pd.DataFrame]:
    """A Parquet file's record batches as frames, indexed by row from 0 on."""
    start = 0
    for batch in _parquet_file(path).iter_batches(batch_size=rows):
        yield as_frame(batch, start)
        start += batch.num_rows


def _parquet_file(path: Path) -> pyarrow.parquet.ParquetFile:
    return pyarrow.parquet.ParquetFile(path, buffer_size=_PARQUET_BUFFER, pre_buffer=False)


def parquet_columns(path: str | Path) -> list[str]:
    """The column names of a Parquet file, read from its schema.

    Raises:
        DataError: As `read_table`.
    """
    path = Path(path)
    check_file(path)
    with reading(path, "parquet"):
        return _parquet_file(path).schema_arrow.names


def parquet_batches(
    path: str | Path, rows: int, columns: list[str]
) -> Iterator[pyarrow.RecordBatch]:
    """Yields a Parquet file's `columns` as Arrow record batches of at most `rows` rows.

    The texts stay Arrow strings: nothing is converted to Python objects, and the file
    is decoded a page at a time, so a large file is held once, as the batches.

    Raises:
        DataError: As `read_table`.
    """
    path = Path(path)
    with reading(path, "parquet"):
        yield from _parquet_file(path).iter_batches(batch_size=rows, columns=columns)


def as_frame(batch: pyarrow.RecordBatch, start: int) -> pd.DataFrame:
    """A record batch as a data frame whose index counts rows from 0 at the file's start."""
    frame = batch.to_pandas()
    frame.index = pd.RangeIndex(start, start + len(frame))
    return frame


def text_array(values: pyarrow.Array, column: str, source, start: int) -> pyarrow.Array:
    """A Parquet column's texts as Arrow strings, checked as `text_cells` checks a frame's.

    A string column is returned as it is; other types go through `text_cells`.
    """
    if pyarrow.types.is_string(values.type) or pyarrow.types.is_large_string(values.type):
        if values.null_count:
            row = start + pyarrow.compute.index(values.is_null(), True).as_py()
            frame = pd.DataFrame({column: [None]}, index=pd.RangeIndex(row, row + 1))
            text_cells(frame, column, source)  # raises, naming the row
        return values
    frame = as_frame(pyarrow.RecordBatch.from_arrays([values], [column]), start)
    return pyarrow.array(text_cells(frame, column, source), pyarrow.string())


def describe_row(frame: pd.DataFrame, label) -> str:
    """Names the row of `frame` whose index label is `label`, as an error message says it."""
    if frame.index.name == "line":
        return f"line {label}"
    if frame.index.name == "record":
        return f"record {label + 1}"
    return f"data row {label + 1}"


def is_missing(value) -> bool:
    """Whether a cell has no value: a JSON null or missing key, or a Parquet null."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def text_cells(frame: pd.DataFrame, column: str, source) -> list[str]:
    """Returns a column's texts, refusing missing values and JSON objects or lists.

    An empty string is a text (it tokenizes to the special tokens alone); a number in
    a Parquet column becomes its text.

    Raises:
        DataError: A cell has no value or holds an object or list, naming its row.
    """
    texts = []
    for label, value in frame[column].items():
        if is_missing(value):
            raise DataError(
                f"{source}, {describe_row(frame, label)}: no value in column {column!r} (the "
                'key is missing or null). Fill it in, give "" for an empty text, or remove '
                "the row."
            )
        if isinstance(value, dict | list):
            kind = "an object" if isinstance(value, dict) else "a list"
            raise DataError(
                f"{source}, {describe_row(frame, label)}: column {column!r} holds {kind}, not "
                "text. Give a string."
            )
        texts.append(value if isinstance(value, str) else str(value))
    return texts


def _read_whole(path: Path, kind: str) -> pd.DataFrame:
    if kind == "parquet":
        return pd.read_parquet(path)
    if kind in _SEPARATORS:
        _check_header(path, kind)
        return _read_csv(path, kind)
    with _open_text(path) as handle:
        if kind == "jsonl":
            return _whole(_jsonl_frames(handle, path, rows=None))
        return _read_json(handle, path)


@contextlib.contextmanager
def reading(path: Path, kind: str):
    """Turns the readers' exceptions into one-line `DataError`s naming the file."""
    try:
        yield
    except DataError:
        raise
    except UnicodeDecodeError:
        raise DataError(_not_utf8_message(path)) from None
    except _CORRUPT as error:
        raise DataError(
            f"{path} is truncated or corrupt ({first_line(error)}). Compress it again, or "
            "give the file uncompressed."
        ) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty. It needs a header row and data rows.") from None
    except pd.errors.ParserError as error:
        raise DataError(f"{path} is malformed: {first_line(error)}.") from None
    except ValueError as error:
        raise DataError(f"{path} cannot be read as {kind}: {first_line(error)}.") from None
    except OSError as error:
        if "Invalid data stream" in str(error):  # bz2's word for a damaged file
            raise DataError(
                f"{path} is truncated or corrupt ({error}). Compress it again, or give the "
                "file uncompressed."
            ) from None
        raise DataError(f"{path} cannot be read: {short_reason(error)}.") from None


def _not_utf8_message(path: Path) -> str:
    # The reader's offset is relative to its buffer; decode the whole file for the real one.
    with _open_raw(path) as handle:
        raw = handle.read()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        return (
            f"{path} is not UTF-8: byte 0x{raw[error.start]:02x} at offset {error.start} "
            f"(line {line}) cannot be decoded. Save the file as UTF-8."
        )
    return f"{path} is not UTF-8. Save the file as UTF-8."


def _open_raw(path: Path):
    suffix = path.suffix.lower()
    if suffix == ".bz2":
        return bz2.open(path, "rb")
    if suffix == ".gz":
        return gzip.open(path, "rb")
    if suffix == ".xz":
        return lzma.open(path, "rb")
    return path.open("rb")


def _open_text(path: Path):
    # utf-8-sig accepts and drops a byte-order mark.
    return io.TextIOWrapper(_open_raw(path), encoding="utf-8-sig", newline="")


def _check_header(path: Path, kind: str) -> None:
    """Refuses a header that names a column twice (pandas would rename the second)."""
    with _open_text(path) as handle:
        header = next(csv.reader(handle, delimiter=_SEPARATORS[kind]), [])
    seen: dict[str, int] = {}
    for position, name in enumerate(header, 1):
        if name in seen:
            raise DataError(
                f"{path} has two columns named {name!r} (columns {seen[name]} and "
                f"{position}). Rename one of them."
            )
        seen[name] = position


def _read_csv(path: Path, kind: str, chunksize: int | None = None):
    # dtype=str keeps every cell as written; the C parser names a malformed line.
    return pd.read_csv(
        path,
        sep=_SEPARATORS[kind],
        dtype=str,
        keep_default_na=False,
        na_values=[],
        encoding="utf-8-sig",
        chunksize=chunksize,
    )


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs):
    keys = [key for key, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:
            raise _DuplicateKey(key)
    return dict(pairs)


def _parse(text: str):
    """Parses JSON with every number kept as the text it was written as."""
    return json.loads(
        text,
        parse_int=str,
        parse_float=str,
        parse_constant=str,
        object_pairs_hook=_unique_keys,
    )


def _jsonl_frames(handle, path: Path, rows: int | None) -> Iterator[pd.DataFrame]:
    """Yields frames of JSON Lines records indexed by line number; blank lines are skipped."""
    records, lines = [], []
    for number, line in enumerate(handle, 1):
        if not line.strip():
            continue
        try:
            record = _parse(line)
        except json.JSONDecodeError as error:
            raise DataError(
                f"{path}, line {number} is not valid JSON: {error.msg} (column {error.colno}). "
                "Fix or remove the line."
            ) from None
        except _DuplicateKey as error:
            raise DataError(
                f"{path}, line {number} has the key {error.args[0]!r} twice. Keep one."
            ) from None
        if not isinstance(record, dict):
            raise DataError(
                f"{path}, line {number} is not a JSON object but {_json_kind(record)}. Each "
                'line must be one record, e.g. {"text": "...", "label": "..."}.'
            )
        records.append(record)
        lines.append(number)
        if rows is not None and len(records) == rows:
            yield _frame(records, lines, "line")
            records, lines = [], []
    if records or rows is None:
        yield _frame(records, lines, "line")


def _read_json(handle, path: Path) -> pd.DataFrame:
    text = handle.read()
    try:
        data = _parse(text)
    except json.JSONDecodeError as error:
        if error.msg != "Extra data":
            raise DataError(
                f"{path} is not valid JSON: {error.msg} at line {error.lineno}, column "
                f"{error.colno}."
            ) from None
        # Many .json files are really JSON Lines.
        return _whole(_jsonl_frames(io.StringIO(text), path, rows=None))
    except _DuplicateKey as error:
        raise DataError(f"{path} has a record with the key {error.args[0]!r} twice.") from None
    if isinstance(data, dict):  # one record: a JSON Lines file of one line
        data = [data]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError(
            f"{path} must hold a JSON array of objects (records), e.g. "
            '[{"text": "...", "label": "..."}], or one object per line.'
        )
    return _frame(data, list(range(len(data))), "record")


def _frame(records: list[dict], index: list[int], name: str) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records, index=pd.Index(index, name=name))
    return frame.astype(object) if len(frame.columns) else frame


def _whole(frames: Iterator[pd.DataFrame]) -> pd.DataFrame:
    return next(iter(frames))


def _json_kind(value) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return f"{json.dumps(value)}"
