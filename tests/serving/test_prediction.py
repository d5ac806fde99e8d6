"""Tests of predict and report from the exported SavedModel alone."""

import csv
import io
import json
import os
import re

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_rows, write_csv

from tf_finetune.cli import main
from tf_finetune.errors import DataError, ExportError
from tf_finetune.serving import prediction


@pytest.fixture(scope="session")
def run(trained_run):
    """The session's shared trained run (see conftest): read it, never write into it."""
    return trained_run


@pytest.fixture(scope="module")
def model(run):
    return prediction.ExportedModel(run.run_dir)


def saved_probabilities(run):
    with open(run.run_dir / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return rows, np.array([[float(r["p_neg"]), float(r["p_pos"])] for r in rows])


def test_the_run_directory_resolves_to_its_latest_version(run, model, tmp_path):
    assert model.path == run.saved_model_dir
    assert model.label_names == ["neg", "pos"]
    assert not model.takes_pair
    with pytest.raises(ExportError, match="No SavedModel in"):
        prediction.ExportedModel(tmp_path)


def test_predict_file_matches_the_trained_model(run, model, tmp_path):
    rows, expected = saved_probabilities(run)
    source = write_csv(tmp_path / "in.csv", [(r["text"], r["label"]) for r in rows])
    out = io.StringIO()
    count = prediction.predict_file(
        model, prediction.iter_batches(source, "text", batch_size=5), out, ".csv", "text"
    )
    assert count == len(rows)
    written = list(csv.DictReader(io.StringIO(out.getvalue())))
    got = np.array([[float(r["p_neg"]), float(r["p_pos"])] for r in written])
    np.testing.assert_allclose(got, expected, atol=2e-6)
    assert [r["label"] for r in written] == [r["predicted"] for r in rows]


def test_predict_cli_texts_and_jsonl_file(run, tmp_path):
    result = CliRunner().invoke(
        main, ["predict", str(run.run_dir), "--text", "a good film", "--text", "dull and boring"]
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line]
    assert lines[0] == "text,label,p_neg,p_pos"
    assert lines[1].startswith("a good film,pos,") and lines[2].startswith("dull and boring,neg,")

    source = tmp_path / "texts.txt"
    source.write_text("a lovely story\nthe acting was poor\n", encoding="utf-8")
    output = tmp_path / "out.jsonl"
    result = CliRunner().invoke(
        main,
        [
            "predict",
            str(run.run_dir),
            "--input",
            str(source),
            "--output",
            str(output),
            "--batch-size",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["label"] for r in records] == ["pos", "neg"]
    assert all(abs(sum(r["scores"].values()) - 1) < 1e-5 for r in records)


def test_predict_cli_usage_errors(run, tmp_path):
    result = CliRunner().invoke(main, ["predict", str(run.run_dir)])
    assert result.exit_code == 2 and "Give either --text" in result.output
    result = CliRunner().invoke(
        main, ["predict", str(run.run_dir), "--text", "x", "--output", str(tmp_path / "o.txt")]
    )
    assert result.exit_code == 2 and "--output must end in .csv or .jsonl" in result.output
    result = CliRunner().invoke(
        main, ["predict", str(run.run_dir), "--input", str(tmp_path / "missing.csv")]
    )
    assert result.exit_code == 4 and "missing.csv does not exist" in result.output
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")
    result = CliRunner().invoke(
        main, ["predict", str(run.run_dir), "--input", str(tmp_path / "empty.csv")]
    )
    assert result.exit_code == 4 and "empty.csv is empty" in result.output


def test_report_cli_writes_the_report_from_the_export(run, tmp_path):
    from PIL import Image

    rows = make_rows(40, seed=11)
    data = write_csv(tmp_path / "holdout.csv", rows)
    result = CliRunner().invoke(
        main,
        ["report", str(run.run_dir), "--data", str(data), "--output-dir", str(tmp_path / "rep")],
    )
    assert result.exit_code == 0, result.output
    folder = tmp_path / "rep"
    assert sorted(p.name for p in folder.iterdir()) == [
        "confusion_matrix.png",
        "misclassified.csv",
        "report.json",
        "report.txt",
    ]
    report = json.loads((folder / "report.json").read_text())
    assert int(report["macro avg"]["support"]) == 40
    assert sum(map(sum, report["confusion_matrix"])) == 40
    with open(folder / "misclassified.csv", newline="") as handle:
        wrong = list(csv.DictReader(handle))
    assert len(wrong) == 40 - sum(report["confusion_matrix"][i][i] for i in range(2))
    assert all(r["label"] != r["predicted"] for r in wrong)
    with Image.open(folder / "confusion_matrix.png") as image:
        assert image.format == "PNG" and image.size == (400, 400)
    assert (folder / "report.txt").read_text() in result.output
    # A second report never overwrites the first.
    again = CliRunner().invoke(
        main, ["report", str(run.run_dir), "--data", str(data), "--output-dir", str(folder)]
    )
    assert again.exit_code == 7 and "exists already" in again.output


def test_report_names_labels_the_model_does_not_know(run, model, tmp_path):
    data = write_csv(tmp_path / "odd.csv", [("good film", "pos"), ("meh", "neutral")])
    batches = prediction.iter_batches(data, "text", label_column="label")
    with pytest.raises(DataError, match=r"labels the model does not know: 'neutral'"):
        prediction.report_file(model, batches, "text", "label", None, str(data))
    result = CliRunner().invoke(
        main,
        ["report", str(run.run_dir), "--data", str(data), "--output-dir", str(tmp_path / "never")],
    )
    assert result.exit_code == 4
    assert not (tmp_path / "never").exists()


def test_row_estimate_for_the_progress_bar(tmp_path):
    write_csv(tmp_path / "a.csv", make_rows(7, seed=1))
    (tmp_path / "b.txt").write_text("one\ntwo\nthree\n", encoding="utf-8")
    assert prediction.estimate_rows(tmp_path / "a.csv") == 7
    assert prediction.estimate_rows(tmp_path / "b.txt") == 3
    assert prediction.estimate_rows(tmp_path / "c.parquet") is None


def _predict(run, *args, **kwargs):
    return CliRunner().invoke(main, ["predict", str(run.run_dir), *args], **kwargs)


def test_a_failing_input_leaves_the_previous_output_file_untouched(run, tmp_path):
    output = tmp_path / "predictions.csv"
    output.write_bytes(b"text,label\nearlier run,pos\n")
    source = tmp_path / "in.csv"
    good = "".join(f"a good film {i},pos\n" for i in range(40))
    source.write_text("text,label\n" + good + "a bad,row,with three cells\n", encoding="utf-8")
    result = _predict(run, "--input", str(source), "--output", str(output), "--batch-size", "8")
    assert result.exit_code == 4, result.output
    assert "in.csv is malformed" in result.output
    assert f"{output} was left as it was" in result.output
    assert output.read_bytes() == b"text,label\nearlier run,pos\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "predictions.csv"]
    # Once the input is good, the file is replaced whole.
    source.write_text("text,label\n" + good, encoding="utf-8")
    result = _predict(run, "--input", str(source), "--output", str(output), "--batch-size", "8")
    assert result.exit_code == 0, result.output
    assert len(output.read_text(encoding="utf-8").splitlines()) == 41


def test_a_bad_input_prints_nothing_to_standard_output(run, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "fine"}\n{"txt": "a typo in the key"}\n', encoding="utf-8")
    result = _predict(run, "--input", str(source))
    assert result.exit_code == 4
    assert result.stdout == ""
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: {source}, line 2: no value in column 'text' (the key is missing or null). "
        'Fill it in, give "" for an empty text, or remove the row.'
    )


def test_predict_reads_standard_input(run):
    result = _predict(run, "--input", "-", input="a lovely story\nthe acting was poor\n")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["text"], r["label"]) for r in rows] == [
        ("a lovely story", "pos"),
        ("the acting was poor", "neg"),
    ]
    lines = '{"text": "superb acting"}\n{"text": {"no": "object"}}\n'
    result = _predict(run, "--input", "-", "--input-format", "jsonl", input=lines)
    assert result.exit_code == 4
    assert "Error: standard input, line 2: column 'text' holds an object" in result.stderr


def test_predict_output_into_a_missing_folder_is_a_usage_error(run, tmp_path):
    output = tmp_path / "nowhere" / "out.csv"
    result = _predict(run, "--text", "fine", "--output", str(output))
    assert result.exit_code == 2
    assert f"--output's folder {output.parent} does not exist. Create it first." in result.output
    assert not output.parent.exists()


@pytest.mark.parametrize("damage", ["truncated saved_model.pb", "no variables"])
def test_a_damaged_savedmodel_is_one_line(run, tmp_path, damage):
    import shutil

    copy = tmp_path / "model" / "1"
    shutil.copytree(run.saved_model_dir, copy)
    if damage == "no variables":
        shutil.rmtree(copy / "variables")
    else:
        graph = (copy / "saved_model.pb").read_bytes()
        (copy / "saved_model.pb").write_bytes(graph[: len(graph) // 3])
    data = write_csv(tmp_path / "in.csv", make_rows(4, seed=1))
    for command in (
        ["predict", str(copy.parent), "--text", "x"],
        ["report", str(copy.parent), "--data", str(data)],
    ):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 7, result.output
        lines = result.output.strip().splitlines()
        assert lines[-1].startswith(f"Error: The SavedModel at {copy} cannot be loaded (")
        assert lines[-1].endswith(
            "it is damaged or incomplete. Export it again, e.g. with "
            "tf-finetune fit --resume on its run."
        )
        assert "Traceback" not in result.output


def test_report_refuses_one_column_as_text_and_label(run, tmp_path):
    source = write_csv(tmp_path / "in.csv", make_rows(4, seed=1))
    result = CliRunner().invoke(
        main, ["report", str(run.run_dir), "--data", str(source), "--label-column", "text"]
    )
    assert result.exit_code == 2
    assert "--label-column 'text' is also the text column" in result.output


def test_commands_print_no_tensorflow_log_lines_unless_debug(run):
    import subprocess
    import sys

    def stderr_of(*flags):
        command = [sys.executable, "-m", "tf_finetune", *flags, "predict", str(run.run_dir)]
        env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
        done = subprocess.run(
            [*command, "--text", "a good film"], capture_output=True, text=True, env=env
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[1].startswith("a good film,pos,")
        return done.stderr

    tensorflow_lines = re.compile(r"^(?:[IWEF]\d{4} |WARNING: All log messages)", re.M)
    assert not tensorflow_lines.search(stderr_of())
    assert tensorflow_lines.search(stderr_of("--debug"))


def test_predict_and_report_are_library_functions(run, tmp_path):
    from tf_finetune import predict, report

    stream = io.StringIO()
    assert predict(run.run_dir, stream, texts=["a good film", "dull and boring"]) == 2
    rows = list(csv.DictReader(io.StringIO(stream.getvalue())))
    assert [r["label"] for r in rows] == ["pos", "neg"]
    output = tmp_path / "out.jsonl"
    assert predict(run.run_dir, output, texts=["superb"]) == 1
    assert json.loads(output.read_text())["label"] == "pos"
    data = write_csv(tmp_path / "labelled.csv", make_rows(12, seed=4))
    result, folder = report(run.run_dir, data, tmp_path / "report")
    assert folder == tmp_path / "report"
    assert sorted(p.name for p in folder.iterdir()) == [
        "confusion_matrix.png", "misclassified.csv", "report.json", "report.txt",
    ]  # fmt: skip
    assert result["report"]["macro avg"]["support"] == 12
