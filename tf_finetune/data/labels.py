"""Label names and label ids.

Names come from a `ClassLabel` feature when the data has one. Otherwise string labels
are sorted, and integer labels are taken as class ids 0..K-1 named "0".."K-1". In a
text file (CSV, TSV, JSON) labels are integers only when every one is written as a
plain whole number ("0", "7", "-1"): "01" or "1.0" make the column's labels names.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Sequence

from tf_finetune.errors import DataError


def infer_label_names(values: Sequence, source: str, class_names: Sequence[str] | None = None):
    """Returns the label names for a training column.

    Args:
        values: The training labels as read.
        source: Where they come from, for error messages ("train.csv, column 'label'").
        class_names: Names of a `ClassLabel` feature, which win when present.

    Raises:
        DataError: A label is missing or an integer label is negative.
    """
    if class_names is not None:
        return list(class_names)
    _check_present(values, source)
    if _all_integers(values):
        negative = [(i, v) for i, v in enumerate(values) if v < 0]
        if negative:
            row, value = negative[0]
            raise DataError(
                f"{source}, data row {row + 1}: label {value} is negative. Integer labels are "
                "class ids 0..K-1; fix the row or use string labels."
            )
        return [str(i) for i in range(int(max(values)) + 1)]
    return sorted({str(v) for v in values})


def encode_labels(values: Sequence, names: Sequence[str], source: str, integer_ids: bool):
    """Maps labels to class ids.

    Args:
        values: The labels as read.
        names: The label names from `infer_label_names`.
        source: Where the labels come from, for error messages.
        integer_ids: Whether labels are class ids (integer or `ClassLabel` data) rather
            than names.

    Raises:
        DataError: A label is missing, or not a class the training data has.
    """
    _check_present(values, source)
    if integer_ids:
        ids = [int(v) for v in values] if _all_integers(values) else None
        if ids is None:
            raise DataError(
                f"{source} holds non-integer labels while training labels are integer ids. "
                "Use the same kind of label in every split."
            )
        bad = [(i, v) for i, v in enumerate(ids) if not 0 <= v < len(names)]
        if bad:
            row, value = bad[0]
            raise DataError(
                f"{source}, data row {row + 1}: label {value} is outside the class ids "
                f"0..{len(names) - 1} of the training data ({len(bad)} such rows). "
                "Fix the labels or add the class to training."
            )
        return ids
    index = {name: i for i, name in enumerate(names)}
    check_known((str(v) for v in values), index, source)
    return [index[str(v)] for v in values]


def check_known(found, names, source: str) -> None:
    """Refuses labels that are not among `names`, listing the first few.

    Raises:
        DataError: A label in `found` is not a name training saw.
    """
    unknown = sorted({label for label in found if label not in names})
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5])
        raise DataError(
            f"{source} has labels that training never saw: {shown}"
            f"{' ...' if len(unknown) > 5 else ''}. Known labels: {', '.join(names)}. "
            "Fix them or add examples of them to training."
        )


_PLAIN_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")


def parse_ids(values: Sequence) -> list:
    """Returns text labels as integers when every one is a plain whole number.

    Otherwise returns them unchanged, so "01" and "1" stay two labels.
    """
    if values and all(isinstance(v, str) and _PLAIN_INTEGER.fullmatch(v) for v in values):
        return [int(v) for v in values]
    return list(values)


def labels_are_ids(values: Sequence, class_names: Sequence[str] | None) -> bool:
    """Returns whether the labels are class ids (a ClassLabel, or all integers)."""
    return class_names is not None or _all_integers(values)


def _all_integers(values: Sequence) -> bool:
    return all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values)


def _check_present(values: Sequence, source: str) -> None:
    for row, value in enumerate(values):
        missing = value is None or value == "" or (isinstance(value, float) and math.isnan(value))
        if missing:
            raise DataError(
                f"{source}, data row {row + 1}: the label is missing. Fill it in or remove the row."
            )
