"""Tests of `tf-finetune compare`: planning, the table files, and whole comparisons."""

import csv
import json

import pytest
from click.testing import CliRunner

from tf_finetune.cli import main
from tf_finetune.errors import ConfigError
from tf_finetune.serving import compare

ROWS = [
    {
        "run": "bert",
        "model": "bert-base-uncased",
        "macro_f1": 0.86,
        "accuracy": 0.864,
        "train_samples_per_second": 18.0,
        "inference_texts_per_second": 120.0,
        "parameters": 109483778,
        "wall_seconds": 1500.0,
    },
    {
        "run": "distilbert",
        "model": "distilbert-base-uncased",
        "macro_f1": 0.84,
        "accuracy": 0.85,
        "train_samples_per_second": 35.0,
        "inference_texts_per_second": 240.0,
        "parameters": 66955010,
        "wall_seconds": 800.0,
    },
    {"run": "broken", "model": "nowhere", "error": "Cannot load model 'nowhere'."},
]


def test_markdown_table_names_the_best_and_fastest():
    table = compare.markdown_table(ROWS)
    lines = table.splitlines()
    assert lines[0].startswith("| run | model | macro F1 | accuracy | train samples/s")
    assert "| bert | bert-base-uncased | 0.8600 | 0.8640 | 18.0 | 120.0 | 109,483,778 |" in table
    assert "| broken | nowhere | - | - | - | - | - | - | Cannot load model 'nowhere'. |" in table
    assert "- Best macro F1: **bert** (0.8600)." in lines
    assert "- Fastest training: **distilbert** (35.0)." in lines
    assert "- Fastest inference: **distilbert** (240.0)." in lines


def test_comparison_files_hold_every_row(tmp_path):
    import matplotlib.image

    compare.write_comparison(ROWS, tmp_path)
    with open(tmp_path / "comparison.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["run"] for row in rows] == ["bert", "distilbert", "broken"]
    assert float(rows[1]["train_samples_per_second"]) == 35.0
    assert rows[2]["error"] and rows[2]["macro_f1"] == ""
    assert (tmp_path / "comparison.md").read_text(encoding="utf-8") == compare.markdown_table(ROWS)
    height, width, _ = matplotlib.image.imread(tmp_path / "comparison.png").shape
    assert width == 1200 and height >= 300


def test_plan_gives_each_model_a_run_directory(tmp_path):
    entries = compare.plan(
        [], ["packaged:all-MiniLM-L6-v2", "org/bert", "other/bert"], None, {"epochs": 1}, tmp_path
    )
    assert [e.name for e in entries] == ["all-MiniLM-L6-v2", "bert", "bert-2"]
    assert {e.config.output_dir for e in entries} == {str(tmp_path / "runs")}
    assert [e.config.model for e in entries][1:] == ["org/bert", "other/bert"]
    assert all(e.config.epochs == 1 for e in entries)


def test_plan_refuses_entries_on_different_data(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("train_file: one.csv\n", encoding="utf-8")
    b.write_text("train_file: two.csv\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"b.yaml trains on other data than .*a.yaml \(train_fi"):
        compare.plan([str(a), str(b)], [], None, {}, tmp_path)
    with pytest.raises(ConfigError, match="Give either config files"):
        compare.plan([str(a)], ["m"], None, {}, tmp_path)


def test_compare_fine_tunes_each_model_and_resumes_without_training_again(
    tiny_checkpoint, tmp_path
):
    from conftest import tiny_fit_options

    options = tiny_fit_options(tiny_checkpoint, tmp_path)
    second = tmp_path / "second-bert"
    second.symlink_to(tiny_checkpoint, target_is_directory=True)
    args = ["compare", "--models", f"{tiny_checkpoint},{second},{tmp_path / 'missing'}"]
    for key in ("train_file", "validation_file", "test_file", "learning_rate", "batch_size"):
        args += ["--" + key.replace("_", "-"), str(options[key])]
    args += ["--epochs", "2", "--output-dir", str(tmp_path / "out"), "--run-name", "cmp"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 1, first.output
    assert "1 run(s) failed: missing." in first.output
    folder = tmp_path / "out" / "cmp"
    with open(folder / "comparison.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["run"] for row in rows] == [tiny_checkpoint.name, "second-bert", "missing"]
    for row in rows[:2]:
        report = json.loads((folder / "runs" / row["run"] / "report.json").read_text())
        assert float(row["macro_f1"]) == pytest.approx(report["macro avg"]["f1-score"])
        assert float(row["accuracy"]) == pytest.approx(report["accuracy"])
        assert int(row["parameters"]) > 0
        assert float(row["inference_texts_per_second"]) > 0
        assert float(row["wall_seconds"]) > 0
    assert "is not a directory" in rows[2]["error"]
    assert "| second-bert |" in first.output
    reports = [folder / "runs" / row["run"] / "report.json" for row in rows[:2]]
    written = [path.stat().st_mtime_ns for path in reports]
    table = (folder / "comparison.csv").read_bytes()
    repeated = CliRunner().invoke(main, args)  # the same command: it must not destroy the table
    assert repeated.exit_code != 0
    assert "already holds the run(s)" in repeated.output and "--resume" in repeated.output
    assert (folder / "comparison.csv").read_bytes() == table
    again = CliRunner().invoke(main, [*args, "--resume"])
    assert again.exit_code == 1  # "missing" is tried again, and fails again
    assert [path.stat().st_mtime_ns for path in reports] == written  # not trained again
    with open(folder / "comparison.csv", encoding="utf-8") as handle:
        assert list(csv.DictReader(handle)) == rows
