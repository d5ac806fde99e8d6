"""Tests of reading local data files."""

import bz2
import json

import pandas as pd
import pytest

from tf_finetune.data_files import file_format, read_table
from tf_finetune.errors import DataError


def test_csv_cells_that_look_missing_stay_text(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\nNA,pos\nnull,neg\nNone,pos\nnan,neg\n,pos\n", encoding="utf-8")
    frame = read_table(path)
    assert frame["text"].tolist() == ["NA", "null", "None", "nan", ""]


def test_csv_byte_order_mark_is_dropped(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes("\ufefftext,label\nhi,pos\n".encode())
    assert list(read_table(path).columns) == ["text", "label"]


def test_integer_labels_stay_integers(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\na,0\nb,1\n", encoding="utf-8")
    assert read_table(path)["label"].tolist() == [0, 1]


def test_json_jsonl_parquet_and_compressed_csv(tmp_path):
    rows = [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}]
    (tmp_path / "d.json").write_text(json.dumps(rows), encoding="utf-8")
    (tmp_path / "d.jsonl").write_text("\n".join(map(json.dumps, rows)), encoding="utf-8")
    (tmp_path / "lines.json").write_text("\n".join(map(json.dumps, rows)), encoding="utf-8")
    pd.DataFrame(rows).to_parquet(tmp_path / "d.parquet")
    (tmp_path / "d.csv.bz2").write_bytes(bz2.compress(b"text,label\na,x\nb,y\n"))
    for name in ("d.json", "d.jsonl", "lines.json", "d.parquet", "d.csv.bz2"):
        frame = read_table(tmp_path / name)
        assert frame.to_dict("records") == rows, name


def test_malformed_csv_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("text,label\na,pos\nb,neg,extra\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.csv is malformed: .*line 3"):
        read_table(path)


def test_non_utf8_names_the_byte_offset(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(b"text,label\ncaf\xe9,pos\n")
    with pytest.raises(
        DataError, match=r"latin\.csv is not UTF-8: byte 0xe9 at offset 14 \(line 2\)"
    ):
        read_table(path)


def test_non_utf8_offset_is_counted_from_the_start_of_a_large_file(tmp_path):
    path = tmp_path / "big.csv"
    head = b"text,label\n" + b"fine words here,pos\n" * 50_000
    path.write_bytes(head + b"caf\xe9,neg\n")
    with pytest.raises(DataError, match=rf"byte 0xe9 at offset {len(head) + 3} \(line 50002\)"):
        read_table(path)


def test_missing_empty_and_headless_files(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv does not exist"):
        read_table(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")
    with pytest.raises(DataError, match=r"empty\.csv is empty"):
        read_table(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("text,label\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"header\.csv has no data rows"):
        read_table(tmp_path / "header.csv")


def test_format_comes_from_the_suffix(tmp_path):
    assert file_format(tmp_path / "a.tsv") == "tsv"
    assert file_format(tmp_path / "a.JSONL.gz") == "jsonl"
    with pytest.raises(DataError, match=r"a\.txt.*\.csv, \.tsv, \.json, \.jsonl, \.parquet"):
        file_format(tmp_path / "a.txt")


def test_reading_in_chunks_reports_errors_like_reading_whole(tmp_path):
    from tf_finetune.data_files import iter_table

    (tmp_path / "empty.csv").write_text("", encoding="utf-8")
    with pytest.raises(DataError, match=r"empty\.csv is empty"):
        list(iter_table(tmp_path / "empty.csv", 5))
    (tmp_path / "bad.csv").write_text("text,label\na,pos\nb,neg,extra\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.csv is malformed: .*line 3"):
        list(iter_table(tmp_path / "bad.csv", 5))
    (tmp_path / "latin.tsv").write_bytes(b"text\tlabel\ncaf\xe9\tpos\n")
    with pytest.raises(DataError, match=r"byte 0xe9 at offset 14 \(line 2\)"):
        list(iter_table(tmp_path / "latin.tsv", 5))
    (tmp_path / "ok.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n{"text": "c"}\n')
    assert [len(f) for f in iter_table(tmp_path / "ok.jsonl", 2)] == [2, 1]
