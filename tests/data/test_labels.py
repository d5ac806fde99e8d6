"""Tests of label names and ids."""

import pytest

from tf_finetune.data.labels import encode_labels, infer_label_names, labels_are_ids
from tf_finetune.errors import DataError


def test_string_labels_are_sorted():
    assert infer_label_names(["pos", "neg", "pos", "mixed"], "s") == ["mixed", "neg", "pos"]
    assert encode_labels(["pos", "neg"], ["neg", "pos"], "s", integer_ids=False) == [1, 0]


def test_integer_labels_are_class_ids():
    values = [0, 4, 2]
    assert labels_are_ids(values, None)
    assert infer_label_names(values, "s") == ["0", "1", "2", "3", "4"]
    assert encode_labels([4, 0], ["0", "1", "2", "3", "4"], "s", integer_ids=True) == [4, 0]


def test_class_label_names_win():
    assert infer_label_names([0, 1], "s", class_names=["neg", "pos"]) == ["neg", "pos"]
    assert labels_are_ids(["neg"], ["neg", "pos"])


def test_negative_integer_label_names_the_row():
    with pytest.raises(DataError, match=r"train\.csv, data row 3: label -1 is negative"):
        infer_label_names([0, 1, -1], "train.csv")


def test_missing_label_names_the_row():
    with pytest.raises(DataError, match=r"data row 2: the label is missing"):
        infer_label_names(["a", ""], "f")
    with pytest.raises(DataError, match=r"data row 1: the label is missing"):
        encode_labels([float("nan")], ["a"], "f", integer_ids=False)


def test_labels_training_never_saw_are_listed():
    with pytest.raises(DataError, match=r"test\.csv has labels that training never saw: 'meh'"):
        encode_labels(["pos", "meh"], ["neg", "pos"], "test.csv", integer_ids=False)


def test_integer_label_out_of_range_names_the_row():
    with pytest.raises(DataError, match=r"data row 2: label 5 is outside the class ids 0\.\.2"):
        encode_labels([1, 5], ["0", "1", "2"], "v", integer_ids=True)
    with pytest.raises(DataError, match="non-integer labels"):
        encode_labels(["x"], ["0", "1"], "v", integer_ids=True)
