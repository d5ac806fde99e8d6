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
    assert "Why a cell" not in table  # a failed run's "-" are its error's


def test_a_claim_needs_a_gap_wider_than_the_ranges_and_every_dash_says_why():
    rows = [
        {**ROWS[0], "macro_f1_low": 0.83, "macro_f1_high": 0.89},
        {**ROWS[1], "macro_f1_low": 0.80, "macro_f1_high": 0.87},
        {
            "run": "ids-only",
            "model": "m",
            "macro_f1": 0.70,
            "macro_f1_low": 0.65,
            "macro_f1_high": 0.75,
            "accuracy": 0.7,
            "train_samples_per_second": 34.0,
            "train_samples_per_second_low": 30.0,
            "train_samples_per_second_high": 36.0,
            "parameters": 5,
            "wall_seconds": 1.0,
            "notes": {"inference_texts_per_second": "not timed: the export takes token ids"},
        },
    ]
    rows[1] |= {"train_samples_per_second_low": 33.0, "train_samples_per_second_high": 37.0}
    rows[0] |= {"inference_texts_per_second_low": 110.0, "inference_texts_per_second_high": 130.0}
    rows[1] |= {"inference_texts_per_second_low": 230.0, "inference_texts_per_second_high": 250.0}
    lines = compare.markdown_table(rows).splitlines()
    assert (
        "- Best macro F1: a tie between **bert** (0.8600 (0.8300-0.8900)), **distilbert** "
        "(0.8400 (0.8000-0.8700)): their ranges overlap."
    ) in lines
    assert "- Fastest training: a tie between **distilbert** (35.0 (33.0-37.0)), **ids-only**" in (
        next(line for line in lines if line.startswith("- Fastest training"))
    )
    assert "- Fastest inference: **distilbert** (240.0 (230.0-250.0))." in lines
    assert "- ids-only, inference texts/s: not timed: the export takes token ids." in lines
    assert "| ids-only | m | 0.7000 (0.6500-0.7500) | 0.7000 | 34.0 (30.0-36.0) | - |" in "\n".join(
        lines
    )


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
        for key in ("macro_f1", "train_samples_per_second", "inference_texts_per_second"):
            assert float(row[f"{key}_low"]) <= float(row[key]) <= float(row[f"{key}_high"])
        assert float(row["inference_texts_per_second_low"]) > 0
        assert float(row["wall_seconds"]) > 0
    # The same model, trained first and then second in one process: warm-up left out,
    # the order does not decide its speed.
    first_rate, second_rate = (float(row["train_samples_per_second"]) for row in rows[:2])
    assert max(first_rate, second_rate) / min(first_rate, second_rate) < 2.5
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
    timed = ("inference_texts_per_second", "inference_texts_per_second_low")
    timed += ("inference_texts_per_second_high",)
    with open(folder / "comparison.csv", encoding="utf-8") as handle:
        reread = list(csv.DictReader(handle))
    # Reused rows keep their figures; the exports are timed again, all in one session.
    strip = [{k: v for k, v in row.items() if k not in timed} for row in rows]
    assert [{k: v for k, v in row.items() if k not in timed} for row in reread] == strip
    assert all(float(row["inference_texts_per_second"]) > 0 for row in reread[:2])


def test_exports_are_timed_in_rounds_of_rotating_order(tmp_path, monkeypatch):
    from tf_finetune.serving import prediction

    calls = []

    class Timed:
        def __init__(self, path):
            self.name = path.rsplit("/", 1)[-1]

        def predict(self, texts):
            calls.append((self.name, len(texts)))

    monkeypatch.setattr(prediction, "ExportedModel", Timed)
    predictions = tmp_path / "predictions.csv"
    predictions.write_text("text,label,predicted\n" + "t,a,a\n" * 130, encoding="utf-8")
    rows = [
        {"run": name, "export": f"/x/{name}", "predictions": str(predictions), "notes": {}}
        for name in "abc"
    ]
    rows += [{"run": "failed", "error": "broken"}]
    rows += [{"run": "ids", "export": "/x/ids", "notes": {"inference_texts_per_second": "no"}}]
    compare.time_inference(rows, rounds=3)
    assert calls[:3] == [("a", 64), ("b", 64), ("c", 64)]  # each traced once first
    timed = [name for name, _ in calls[3:]]
    assert timed == [n for n in "abcbcacab" for _ in range(3)]  # 130 texts: 3 batches
    assert sum(size for name, size in calls[3:6]) == 130
    for row in rows[:3]:
        low, high = row["inference_texts_per_second_low"], row["inference_texts_per_second_high"]
        assert 0 < low <= row["inference_texts_per_second"] <= high
    assert (
        "inference_texts_per_second" not in rows[3] and "inference_texts_per_second" not in rows[4]
    )


def test_the_f1_interval_holds_the_f1_and_narrows_with_more_examples(tmp_path):
    from sklearn.metrics import f1_score

    def interval(count):
        rows = [("pos" if i % 2 else "neg", "pos" if i % 3 else "neg") for i in range(count)]
        path = tmp_path / f"p{count}.csv"
        lines = ["text,label,predicted"] + [f"t,{t},{p}" for t, p in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        f1 = f1_score([t for t, _ in rows], [p for _, p in rows], average="macro")
        return f1, compare._f1_interval(path)

    f1, (low, high) = interval(60)
    assert low < f1 < high
    wide = high - low
    f1, (low, high) = interval(2400)
    assert low < f1 < high
    assert high - low < wide / 4  # 40 times the examples: ~1/6 of the width
