"""Tests of reading local data files."""

import bz2
import json

import pandas as pd
import pytest

from tf_finetune.data.files import file_format, read_table
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


def test_cells_that_look_like_numbers_are_read_as_written(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\n0001,01\n1e3,1\n-0,1.0\n", encoding="utf-8")
    frame = read_table(path)
    assert frame["text"].tolist() == ["0001", "1e3", "-0"]
    assert frame["label"].tolist() == ["01", "1", "1.0"]
    lines = tmp_path / "d.jsonl"
    lines.write_text('{"text": 1E3, "label": 1.50}\n{"text": "7", "label": 2}\n')
    assert read_table(lines).to_dict("records") == [
        {"text": "1E3", "label": "1.50"},
        {"text": "7", "label": "2"},
    ]


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
    from tf_finetune.data.files import iter_table

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
    # A format given by name is used for files read whole too.
    (tmp_path / "rows.dat").write_text('[{"text": "a"}, {"text": "b"}, {"text": "c"}]')
    frames = list(iter_table(tmp_path / "rows.dat", 2, kind="json"))
    assert [f["text"].tolist() for f in frames] == [["a", "b"], ["c"]]
    (tmp_path / "none.dat").write_text("[]")
    with pytest.raises(DataError, match=r"none\.dat has no data rows"):
        list(iter_table(tmp_path / "none.dat", 2, kind="json"))


def test_a_folder_given_as_a_data_file_is_named_as_a_folder(tmp_path):
    (tmp_path / "train.csv").mkdir()
    with pytest.raises(DataError, match=r"train\.csv is a folder, not a file"):
        read_table(tmp_path / "train.csv")


@pytest.mark.parametrize("name", ["d.csv.gz", "d.jsonl.gz", "d.csv.bz2", "d.csv.xz"])
def test_a_truncated_compressed_file_is_a_data_error(tmp_path, name):
    import gzip
    import lzma

    from tf_finetune.data.files import iter_table

    body = ("text,label\n" if ".csv" in name else "") + "".join(
        (f"row {i} text,pos\n" if ".csv" in name else f'{{"text": "row {i}"}}\n')
        for i in range(5000)
    )
    compress = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}
    packed = compress["." + name.split(".")[-1]](body.encode())
    (tmp_path / name).write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DataError, match=rf"{name.replace('.', '[.]')} is truncated or corrupt"):
        read_table(tmp_path / name)
    with pytest.raises(DataError, match="is truncated or corrupt"):
        list(iter_table(tmp_path / name, 100))


def test_a_header_naming_a_column_twice_is_refused(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("text\tlabel\ttext\na\tpos\tb\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"two columns named 'text' \(columns 1 and 3\)"):
        read_table(path)
    lines = tmp_path / "d.jsonl"
    lines.write_text('{"text": "a"}\n{"text": "b", "text": "c"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"d\.jsonl, line 2 has the key 'text' twice"):
        read_table(lines)


def test_json_lines_errors_name_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a"}\n\n{"text": "b"\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"d\.jsonl, line 3 is not valid JSON"):
        read_table(path)
    path.write_text('{"text": "a"}\n["b"]\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"line 2 is not a JSON object but a list"):
        read_table(path)


def test_text_cells_refuse_missing_values_and_objects_naming_the_line(tmp_path):
    from tf_finetune.data.files import text_cells

    path = tmp_path / "d.jsonl"
    path.write_text(
        '{"text": "a"}\n\n{"text": ""}\n{"label": "x"}\n{"text": null}\n', encoding="utf-8"
    )
    frame = read_table(path)
    with pytest.raises(DataError, match=r"d\.jsonl, line 4: no value in column 'text'"):
        text_cells(frame, "text", path)
    assert text_cells(frame.iloc[:2], "text", path) == ["a", ""]
    with pytest.raises(DataError, match=r"line 5: no value in column 'text'"):
        text_cells(frame.iloc[3:], "text", path)
    path.write_text('{"text": "a"}\n{"text": {"nested": 1}}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"line 2: column 'text' holds an object, not text"):
        text_cells(read_table(path), "text", path)
