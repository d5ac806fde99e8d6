"""Multi-label data: each example's set of labels, and its multi-hot encoding.

A set is written one of three ways:

- a list (a JSON or JSON Lines array, a Parquet list column, a Hub `Sequence` of
  labels): `["drama", "comedy"]`;
- one delimited string (`label_separator`, e.g. "|"): `"drama|comedy"`;
- several 0/1 columns (`label_columns`), one per label, named for it.

Label names are the training sets' labels, sorted (the columns' order for 0/1 columns;
a Hub `ClassLabel`'s names where there is one). An empty set is an error unless
`allow_empty` says the data may have examples with no label.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

from tf_finetune.data.labels import check_known
from tf_finetune.errors import DataError

_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}


def is_set(value) -> bool:
    """Whether a label cell holds a list of labels."""
    return isinstance(value, list | tuple | np.ndarray)


def from_cells(values: Sequence, source: str, separator: str | None) -> list[list[str]]:
    """Each row's labels, from list cells or (with `separator`) delimited strings.

    A missing cell is an empty set.

    Raises:
        DataError: A cell is neither a list nor (with a separator) a string, naming it.
    """
    sets = []
    for row, value in enumerate(values):
        if _missing(value):
            sets.append([])
        elif is_set(value):
            sets.append([_name(v, source, row) for v in value])
        elif separator is not None and isinstance(value, str | numbers.Integral):
            parts = str(value).split(separator)
            sets.append([part.strip() for part in parts if part.strip()])
        else:
            raise DataError(
                f"{source}, data row {row + 1}: the label {value!r} is not a list of labels. "
                "Write each row's labels as a list (JSON), or give --label-separator for "
                "labels written as one delimited string."
            )
    return sets


def from_columns(columns: dict[str, Sequence], source: str) -> list[list[str]]:
    """Each row's labels from 0/1 columns, one per label (`label_columns`).

    Raises:
        DataError: A cell is not 0/1 (or true/false, yes/no), naming its row and column.
    """
    rows = len(next(iter(columns.values())))
    sets = [[] for _ in range(rows)]
    for name, values in columns.items():
        for row, value in enumerate(values):
            text = str(value).strip().lower()
            if isinstance(value, bool):
                text = str(value).lower()
            elif isinstance(value, float) and value.is_integer():
                text = str(int(value))
            if text in _TRUE:
                sets[row].append(name)
            elif text not in _FALSE:
                raise DataError(
                    f"{source}, data row {row + 1}, column {name!r}: {value!r} is not 0 or 1. "
                    "Each label column says whether the row has that label: 0 or 1."
                )
    return sets


def check_not_empty(sets: list[list[str]], source: str, allow_empty: bool) -> None:
    """Refuses an example with no label unless the data may have them."""
    if allow_empty:
        return
    empty = [row for row, labels in enumerate(sets) if not labels]
    if empty:
        raise DataError(
            f"{source}, data row {empty[0] + 1}: the row has no label ({len(empty)} such rows). "
            "Give it one, or add --allow-empty-labels if examples may have none."
        )


def names_of(sets: list[list[str]], source: str) -> list[str]:
    """The label names of the training sets, sorted.

    Raises:
        DataError: Fewer than two labels occur.
    """
    names = sorted({label for labels in sets for label in labels})
    if len(names) < 2:
        raise DataError(
            f"{source} has {len(names)} distinct label(s) ({', '.join(names) or 'none'}). "
            "Multi-label classification needs at least two."
        )
    return names


def multi_hot(sets: list[list[str]], names: list[str], source: str) -> np.ndarray:
    """The sets as an int8 `[rows, labels]` matrix of 0/1.

    Raises:
        DataError: A label is not among `names` (training never saw it).
    """
    index = {name: i for i, name in enumerate(names)}
    check_known((label for labels in sets for label in labels), index, source)
    matrix = np.zeros((len(sets), len(names)), np.int8)
    for row, labels in enumerate(sets):
        matrix[row, [index[label] for label in labels]] = 1
    return matrix


def _name(value, source: str, row: int) -> str:
    if _missing(value) or is_set(value) or isinstance(value, dict):
        raise DataError(
            f"{source}, data row {row + 1}: the list of labels holds {value!r}. Each item "
            "must be a label name or id."
        )
    return str(value)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
