"""Tests of the command line, through Click's CliRunner and a real subprocess."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tf_finetune.cli import main


def invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_help_lists_every_config_option():
    from tf_finetune.config import FIELDS

    result = invoke("fit", "--help")
    assert result.exit_code == 0
    for name in FIELDS:
        assert "--" + name.replace("_", "-") in result.output


def test_help_does_not_import_tensorflow():
    code = (
        "import sys; from click.testing import CliRunner; from tf_finetune.cli import main;"
        "r = CliRunner().invoke(main, ['fit', '--help']); assert r.exit_code == 0;"
        "print(sorted(m for m in ('tensorflow', 'transformers', 'datasets') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_fit_end_to_end_prints_the_report_and_paths(fit_options, tmp_path):
    config = tmp_path / "run.yaml"
    # The file sets everything; the command line overrides two values.
    config.write_text(yaml.safe_dump(dict(fit_options, epochs=1, seed=1)), encoding="utf-8")
    result = invoke("-q", "fit", "--config", str(config), "--epochs", "4", "--seed", "42")
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "tiny"
    resolved = yaml.safe_load((run_dir / "fit_config.yaml").read_text())
    assert (resolved["epochs"], resolved["seed"], resolved["batch_size"]) == (4, 42, 8)
    report = json.loads((run_dir / "report.json").read_text())
    assert report["accuracy"] >= 0.8
    assert "Classification report (test split)" in result.output
    assert (run_dir / "report.txt").read_text() in result.output
    assert f"SavedModel:    {run_dir / '1'}" in result.output
    assert f"tf-finetune tensorboard {run_dir.parent}" in result.output
    stats = json.loads((run_dir / "training_stats.json").read_text())
    assert (
        f"Trained 4 epoch(s) in {stats['train_seconds']:.1f} s: "
        f"{stats['samples_per_second']:.1f} samples/s" in result.output
    )
    assert f"{100 * stats['padding_share']:.1f}% padding" in result.output
    total = sum(stats["phase_seconds"].values())
    assert f"; total {total:.1f} s." in result.output and "Time: " in result.output
    assert f"export {stats['phase_seconds']['export']:.1f} s" in result.output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["--epochs", "0"],
            3,
            "Error: Config key 'epochs' (from the command line) must be at least 1",
        ),
        (["--train-file", "{tmp}/cut.csv.gz"], 4, "cut.csv.gz is truncated or corrupt"),
        (["--train-file", "{tmp}"], 4, "is a folder, not a file. Give the path of a file"),
        (
            ["--train-file", "{tmp}/t.csv", "--validation-file", ""],
            3,
            "'validation_file' (from the command line) is empty",
        ),
        (["--text-column", "label"], 3, "'text_column' and 'label_column' (from the command"),
        (["--max-length", "lots"], 3, "'max_length'"),
        (["--train-file", "{tmp}/missing.csv"], 4, "missing.csv does not exist"),
        (["--model", "{tmp}/nowhere"], 5, "nowhere is not a directory"),
        (["--config", "{tmp}/bad.yaml"], 3, "Unknown config key 'epoch'"),
    ],
)
def test_errors_are_one_line_with_the_class_exit_code(tmp_path, args, code, message):
    import gzip

    (tmp_path / "bad.yaml").write_text("epoch: 3\n", encoding="utf-8")
    packed = gzip.compress(("text,label\n" + "some text,pos\n" * 2000).encode())
    (tmp_path / "cut.csv.gz").write_bytes(packed[: len(packed) // 2])
    args = [a.format(tmp=tmp_path) for a in args]
    result = CliRunner().invoke(main, ["fit", *args, "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert message in lines[0]
    assert "Traceback" not in result.output and "Aborted" not in result.output
    assert not (tmp_path / "out").exists()


def test_overwrite_with_bad_data_keeps_the_finished_run(fit_options, tmp_path):
    run_dir = tmp_path / "runs" / "tiny"
    (run_dir / "1" / "variables").mkdir(parents=True)
    files = {
        "report.json": b'{"accuracy": 0.91}\n',
        "fit_config.yaml": b"epochs: 3\n",
        "1/saved_model.pb": b"\x08\x01graph",
        "1/variables/variables.index": b"index",
    }
    for name, content in files.items():
        (run_dir / name).write_bytes(content)
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\na fine film,pos\na dull film,\n", encoding="utf-8")
    options = dict(fit_options, train_file=str(bad))
    args = [f"--{key.replace('_', '-')}={value}" for key, value in options.items()]
    result = CliRunner().invoke(main, ["fit", *args, "--overwrite"])
    assert result.exit_code == 4, result.output
    assert result.output.strip().splitlines() == [
        f"Error: {bad}, data row 2: the label is missing (column 'label'). Fill it in or "
        f"remove the row. {run_dir} was left as it was."
    ]
    kept = {str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert kept == files  # byte-identical, and no lock or staging left behind


@pytest.mark.parametrize("target", ["a file", "a folder under a file", "a run name that is a file"])
def test_an_output_folder_that_cannot_be_made_is_one_line(tmp_path, target):
    (tmp_path / "taken").write_text("mine", encoding="utf-8")
    args = {
        "a file": ["--output-dir", str(tmp_path / "taken")],
        "a folder under a file": ["--output-dir", str(tmp_path / "taken" / "runs")],
        "a run name that is a file": ["--output-dir", str(tmp_path), "--run-name", "taken"],
    }[target]
    result = CliRunner().invoke(main, ["fit", *args])
    assert result.exit_code == 3, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: Cannot create run directory")
    assert "--output-dir" in lines[0]
    assert (tmp_path / "taken").read_text(encoding="utf-8") == "mine"


def test_bad_column_fails_before_writing_anything(fit_options, tmp_path):
    args = [
        "fit",
        "--model",
        fit_options["model"],
        "--train-file",
        fit_options["train_file"],
        "--text-column",
        "review",
        "--output-dir",
        str(tmp_path / "out"),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 4
    assert "has no column 'review'. Columns found: text, label." in result.output
    assert not (tmp_path / "out").exists()


def test_usage_errors_exit_2():
    result = CliRunner().invoke(main, ["fit", "--padding", "longest"])
    assert result.exit_code == 2
    assert "'longest' is not one of 'grouped', 'dynamic', 'max_length'" in result.output


def test_debug_shows_the_traceback(tmp_path):
    from tf_finetune.errors import ConfigError

    with pytest.raises(ConfigError):
        CliRunner().invoke(main, ["--debug", "fit", "--epochs", "0"], catch_exceptions=False)


def test_console_script_and_module_entry_points():
    # The console script is installed beside the interpreter, on PATH or not.
    script = str(Path(sys.executable).parent / "tf-finetune")
    for command in (
        [script, "--version"],
        [sys.executable, "-m", "tf_finetune", "--version"],
    ):
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        assert done.stdout.strip() == "tf-finetune, version 0.1.0"
        # The process ends as soon as a command returns (`cli.run`), with its exit code
        # and its last line written: a usage error, then a library error (ConfigError).
        for args, code, line in (
            (["fit", "--epochs", "many"], 2, "'many' is not a valid integer"),
            (["fit", "--epochs", "0"], 3, "must be at least 1"),
        ):
            done = subprocess.run([*command[:-1], *args], capture_output=True, text=True)
            assert done.returncode == code, done.stderr
            assert line in done.stderr.strip().splitlines()[-1]


def test_fit_onto_a_full_disk_is_one_line(fit_options, full_disk):
    options = dict(fit_options, output_dir=str(full_disk / "runs"))
    args = [f"--{key.replace('_', '-')}={value}" for key, value in options.items()]
    result = CliRunner().invoke(main, ["fit", *args])
    assert result.exit_code == 3, result.output
    assert result.output.strip().splitlines() == [
        f"Error: Cannot create run directory {full_disk / 'runs' / 'tiny'}: No space left on "
        "device. Choose another --output-dir or --run-name."
    ]
    assert [p.name for p in full_disk.iterdir()] == ["filler"]


@pytest.mark.parametrize(("flags", "use_torch"), [([], "0"), (["--allow-pickle-weights"], None)])
def test_fit_keeps_transformers_from_importing_pytorch_unless_pickles_need_it(
    fit_options, tmp_path, monkeypatch, flags, use_torch
):
    import os

    monkeypatch.delenv("USE_TORCH", raising=False)  # and restored afterwards
    args = ["fit", "--model", fit_options["model"], "--train-file", fit_options["train_file"]]
    args += ["--text-column", "review", "--output-dir", str(tmp_path / "out"), *flags]
    assert CliRunner().invoke(main, args).exit_code == 4  # stops at the data, early
    assert os.environ.get("USE_TORCH") == use_torch


def test_commands_load_tensorflow_without_keras_3(tmp_path):
    """tf.keras is tf-keras: importing TensorFlow does not load Keras 3 (~2 s)."""
    import json
    import os
    import subprocess
    import sys

    script = (
        "import json, os, sys\n"
        "from click.testing import CliRunner\n"
        "from tf_finetune.cli import main\n"
        "code = CliRunner().invoke(main, ['predict', sys.argv[1], '--text', 'x']).exit_code\n"
        "print(json.dumps({'code': code, 'tensorflow': 'tensorflow' in sys.modules,\n"
        "                  'keras_3': 'keras.src' in sys.modules,\n"
        "                  'setting': os.environ.get('TF_USE_LEGACY_KERAS')}))\n"
    )
    # This process has the setting from transformers; a user's shell would not.
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    (tmp_path / "empty").mkdir()  # not a run: the command fails once TensorFlow is loaded
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "empty")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"code": 7, "tensorflow": True, "keras_3": False, "setting": "1"}
