"""Multi-label data: lists, delimited strings and 0/1 columns become the same 0/1 rows."""

import json

import pandas as pd
import pytest
from conftest import write_csv

from tf_finetune.config import load_config
from tf_finetune.data.loading import load_data
from tf_finetune.errors import ConfigError, DataError

SETS = [["drama"], ["comedy", "drama"], ["horror"], ["comedy"], ["drama", "horror"], ["comedy"]]
ROWS = [[0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 1], [1, 0, 0]]  # comedy, drama, horror


def load(train, **options):
    return load_data(load_config(overrides={"train_file": str(train), **options}))


def texts():
    return [f"film number {i}" for i in range(len(SETS))]


def test_json_lists_are_multi_label_by_themselves(tmp_path):
    train = tmp_path / "train.jsonl"
    lines = [json.dumps({"text": t, "label": s}) for t, s in zip(texts(), SETS, strict=True)]
    train.write_text("\n".join(lines) + "\n")
    data = load(train, validation_file=str(train))
    assert data.multi_label
    assert data.label_names == ["comedy", "drama", "horror"]
    assert data.splits["validation"]["labels"][:] == ROWS


def test_parquet_lists_delimited_strings_and_columns_give_the_same_rows(tmp_path):
    frame = pd.DataFrame({"text": texts(), "label": SETS})
    frame.to_parquet(tmp_path / "train.parquet")
    delimited = write_csv(
        tmp_path / "delimited.csv", [(t, "|".join(s)) for t, s in zip(texts(), SETS, strict=True)]
    )
    columns = write_csv(
        tmp_path / "columns.csv",
        [(t, *row) for t, row in zip(texts(), ROWS, strict=True)],
        header=("text", "comedy", "drama", "horror"),
    )
    for train, options in [
        (tmp_path / "train.parquet", {}),
        (delimited, {"label_separator": "|"}),
        (columns, {"label_columns": "comedy,drama,horror"}),
    ]:
        data = load(train, validation_file=str(train), **options)
        assert data.label_names == ["comedy", "drama", "horror"], options
        assert data.splits["validation"]["labels"][:] == ROWS, options


def test_empty_sets_are_refused_unless_allowed_and_bad_cells_are_named(tmp_path):
    rows = [(t, "|".join(s)) for t, s in zip(texts(), SETS, strict=True)] + [("no label", "")]
    train = write_csv(tmp_path / "train.csv", rows)
    with pytest.raises(DataError, match=r"train.csv, data row 7: the label is missing"):
        load(train, label_separator="|")
    data = load(train, validation_file=str(train), label_separator="|", allow_empty_labels=True)
    assert data.splits["validation"]["labels"][-1] == [0, 0, 0]

    columns = write_csv(
        tmp_path / "columns.csv", [("a", 1, 0), ("b", 0, 2)], header=("text", "x", "y")
    )
    with pytest.raises(DataError, match=r"data row 2, column 'y': 2 is not 0 or 1"):
        load(columns, label_columns="x,y")
    with pytest.raises(DataError, match=r"has no column 'z'.*--label-columns"):
        load(columns, label_columns="x,z")
    unseen = write_csv(tmp_path / "unseen.csv", [("a", "comedy|western")])
    delimited = write_csv(tmp_path / "d.csv", rows[:6])
    with pytest.raises(DataError, match=r"unseen\.csv has labels that training never saw"):
        load(delimited, label_separator="|", validation_file=str(unseen))


def test_single_label_options_refuse_multi_label_ones():
    with pytest.raises(ConfigError, match="for multi-label data, and problem is single_label"):
        load_config(overrides={"problem": "single_label", "label_separator": "|"})
    with pytest.raises(ConfigError, match="Give either label_separator"):
        load_config(overrides={"label_separator": "|", "label_columns": "a,b"})


def test_a_hub_sequence_of_class_labels_keeps_its_names(monkeypatch):
    import datasets

    names = ["anger", "joy", "surprise"]
    features = datasets.Features(
        {
            "text": datasets.Value("string"),
            "labels": datasets.Sequence(datasets.ClassLabel(names=names)),
        }
    )
    split = datasets.Dataset.from_dict(
        {"text": texts()[:4], "labels": [[0], [1, 2], [2], [0, 1]]}, features
    )
    monkeypatch.setattr(
        datasets, "load_dataset", lambda *_: datasets.DatasetDict({"train": split, "test": split})
    )
    data = load_data(load_config(overrides={"dataset": "go_emotions", "label_column": "labels"}))
    assert data.multi_label and data.label_names == names
    assert data.splits["test"]["labels"][:] == [[1, 0, 0], [0, 1, 1], [0, 0, 1], [1, 1, 0]]
