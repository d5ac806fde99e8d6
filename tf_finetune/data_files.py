"""Reading local data files (CSV, TSV, JSON, JSON Lines, Parquet) into data frames.

Cells are read as written: "NA", "null", "None" and "nan" in a CSV stay text, and an
empty cell is an empty string, never a missing value.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pandas as pd

from tf_finetune.errors import DataError, first_line

_COMPRESSIONS = (".bz2", ".gz", ".xz")
FORMATS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".parquet": "parquet"}


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


def read_table(path: str | Path) -> pd.DataFrame:
    """Reads one data file into a data frame.

    Raises:
        DataError: The file is missing, unreadable, empty, malformed or not UTF-8.
    """
    path = Path(path)
    kind = file_format(path)
    if not path.is_file():
        raise DataError(f"Data file {path} does not exist. Check the path.")
    with _reading(path, kind):
        frame = _READERS[kind](path)
    if frame.empty:
        raise DataError(f"{path} has no data rows.")
    return frame


def iter_table(path: str | Path, rows: int):
    """Yields a data file in frames of at most `rows` rows.

    CSV, TSV and JSON Lines are read chunk by chunk; JSON and Parquet are read whole.

    Raises:
        DataError: As `read_table`.
    """
    path = Path(path)
    kind = file_format(path)
    if not path.is_file():
        raise DataError(f"Data file {path} does not exist. Check the path.")
    if kind in ("json", "parquet"):
        frame = read_table(path)
        for start in range(0, len(frame), rows):
            yield frame.iloc[start : start + rows]
        return
    with _reading(path, kind), _READERS[kind](path, chunksize=rows) as chunks:
        yield from chunks


@contextlib.contextmanager
def _reading(path: Path, kind: str):
    """Turns the readers' exceptions into one-line `DataError`s naming the file."""
    try:
        yield
    except UnicodeDecodeError:
        raise DataError(_not_utf8_message(path)) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty. It needs a header row and data rows.") from None
    except pd.errors.ParserError as error:
        raise DataError(f"{path} is malformed: {first_line(error)}.") from None
    except (ValueError, json.JSONDecodeError) as error:
        raise DataError(f"{path} cannot be read as {kind}: {first_line(error)}.") from None
    except OSError as error:
        raise DataError(f"{path} cannot be read: {error.strerror or error}.") from None


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
        import bz2

        return bz2.open(path, "rb")
    if suffix == ".gz":
        import gzip

        return gzip.open(path, "rb")
    if suffix == ".xz":
        import lzma

        return lzma.open(path, "rb")
    return path.open("rb")


def _read_csv(path: Path, sep: str = ",", chunksize: int | None = None):
    # utf-8-sig accepts and drops a byte-order mark; the C parser names the bad line.
    return pd.read_csv(
        path,
        sep=sep,
        keep_default_na=False,
        na_values=[],
        encoding="utf-8-sig",
        chunksize=chunksize,
    )


def _read_json(path: Path) -> pd.DataFrame:
    try:
        return pd.read_json(path, orient="records", dtype=False, convert_dates=False)
    except ValueError:
        # Many .json files are really JSON Lines.
        return _read_jsonl(path)


def _read_jsonl(path: Path, chunksize: int | None = None):
    return pd.read_json(path, lines=True, dtype=False, convert_dates=False, chunksize=chunksize)


_READERS = {
    "csv": _read_csv,
    "tsv": lambda path, chunksize=None: _read_csv(path, "\t", chunksize),
    "json": _read_json,
    "jsonl": _read_jsonl,
    "parquet": pd.read_parquet,
}
