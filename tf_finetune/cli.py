"""The `tf-finetune` command line: parses options, calls the library, prints the result.

TensorFlow and transformers are imported inside command bodies, so `--help` is instant.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import signal
import sys
import threading
from contextlib import contextmanager

import click

from tf_finetune import __version__
from tf_finetune.config import FIELDS, field_kind, load_config
from tf_finetune.errors import Stopped, TfFinetuneError


class _FailedCommand(click.ClickException):
    """A library error shown as one line, with the exit code of its class."""

    def __init__(self, error: TfFinetuneError):
        super().__init__(str(error))
        self.exit_code = error.exit_code


def _reports_errors(command):
    """Turns library errors into one-line messages, or tracebacks under --debug."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except TfFinetuneError as error:
            if click.get_current_context().find_root().params.get("debug"):
                raise
            raise _FailedCommand(error) from None

    return wrapper


def _loads_tensorflow(command):
    """Imports TensorFlow before the command, keeping its C++ log lines off the terminal.

    TensorFlow writes start-up lines (oneDNN notices, "failed call to cuInit") to the
    process's standard error before its logging is set up, whatever the log level, so
    standard error is pointed at /dev/null for the import; later C++ lines are held
    back by `TF_CPP_MIN_LOG_LEVEL=3`. `--debug` shows them all.

    `tf.keras` is made tf-keras (`TF_USE_LEGACY_KERAS=1`, which transformers sets too,
    but only once TensorFlow is loaded): otherwise importing TensorFlow loads Keras 3,
    and with it scikit-learn, which no command uses through `tf.keras`. Importing
    TensorFlow took 2.7 s against 4.2-5.1 s on this project's machine. A value the user
    set is kept.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        if not click.get_current_context().find_root().params.get("debug"):
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
            with _silenced_stderr():
                import tensorflow  # noqa: F401
        return command(*args, **kwargs)

    return wrapper


def _without_pytorch(allow_pickle_weights: bool) -> None:
    """Keeps transformers from importing PyTorch, unless pickled weights need it.

    Where PyTorch is installed, transformers imports it with itself: 3 s of every run's
    start-up (4.0 s against 0.9 s on this project's machine), for a library a
    TensorFlow run uses only to read `pytorch_model.bin` (`--allow-pickle-weights`).
    `USE_TORCH` is transformers' own switch; a value the user set is kept.
    """
    if not allow_pickle_weights:
        os.environ.setdefault("USE_TORCH", "0")


@contextmanager
def _silenced_stderr():
    """Points file descriptor 2 at /dev/null for the block (C++ writes there directly)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _config_options(command):
    """Adds one option per `FitConfig` field; an option left out keeps the config's value."""
    for name, field in reversed(FIELDS.items()):
        meta = field.metadata
        if "choices" in meta:
            kind = click.Choice(meta["choices"])
        elif meta.get("cli_type") == "int_or_auto":
            kind = str  # a number or "auto", checked by the config
        else:
            kind = field_kind(name)
        default = field.default if field.default is not None else "none"
        if kind is bool:
            command = click.option(
                "--" + name.replace("_", "-"),
                name,
                is_flag=True,
                default=None,
                help=meta["help"],
            )(command)
            continue
        command = click.option(
            "--" + name.replace("_", "-"),
            name,
            type=kind,
            default=None,
            help=f"{meta['help']} [default: {default}]",
        )(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tf-finetune")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.option("-q", "--quiet", is_flag=True, help="Log warnings and errors only.")
def main(debug: bool, quiet: bool) -> None:
    """Fine-tune pretrained transformers for text classification with Keras/TensorFlow."""
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("tf_finetune").setLevel(logging.WARNING if quiet else logging.INFO)
    if not debug:
        # transformers' advice on unused and new weights restates what a fine-tune is.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    _stop_on_signals(click.get_current_context())


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _stop_on_signals(context: click.Context) -> None:
    """Turns SIGTERM and Ctrl-C into a `Stopped` error for the rest of the command.

    The error unwinds through the library's cleanup (staged files, run locks), and the
    command then says what was kept, with exit code 128 + the signal number. Training
    installs its own handlers for a clean stop after the current step. A second signal
    acts at once. The previous handlers come back when the command ends.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    previous = {number: signal.getsignal(number) for number in _STOP_SIGNALS}

    def stop(number, frame):
        signal.signal(number, previous[number])
        name = signal.Signals(number).name
        raise Stopped(f"Stopped by {name}", 128 + number)

    for number in _STOP_SIGNALS:
        signal.signal(number, stop)

    def restore():
        for number, handler in previous.items():
            signal.signal(number, handler)

    context.call_on_close(restore)


@main.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="YAML file of settings; flags given on the command line override it.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --run-name's directory from its last checkpoint.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace the run in --run-name's directory; the old run is kept until the new one "
    "has its first checkpoint.",
)
@_config_options
@_reports_errors
@_loads_tensorflow
def fit(config_file: str | None, resume: bool, overwrite: bool, **options) -> None:
    """Fine-tune a checkpoint, report on the test split and export a SavedModel.

    With no options it fine-tunes the packaged all-MiniLM-L6-v2 checkpoint on the
    packaged Rotten Tomatoes critic quotes, fully offline.
    """
    config = load_config(config_file, options)
    _without_pytorch(config.allow_pickle_weights)

    from tf_finetune.pipeline import fit as run_fit

    quiet = click.get_current_context().find_root().params.get("quiet")
    progress = 0 if quiet else (1 if sys.stdout.isatty() else 2)
    result = run_fit(config, verbose=progress, resume=resume, overwrite=overwrite)
    from tf_finetune.runtime import clock
    from tf_finetune.training import efficiency
    from tf_finetune.training.throughput import describe

    click.echo("\n" + describe(result.stats))
    if efficiency.describe(result.stats):
        click.echo(efficiency.describe(result.stats))
    click.echo(clock.describe(result.stats["phase_seconds"]))
    if not result.chief:
        click.echo(f"\nThis worker is done; the chief writes the run to {result.run_dir}.")
        return
    click.echo(f"\nClassification report ({result.eval_split} split):\n")
    click.echo(result.report_text)
    click.echo(f"Run directory: {result.run_dir}")
    click.echo(f"SavedModel:    {result.saved_model_dir}")
    if result.token_ids_only_reason:
        click.echo(f"               takes token ids only: {result.token_ids_only_reason}")
    else:
        click.echo("               serving_default takes raw text")
    click.echo(f"TensorBoard:   tf-finetune tensorboard {result.run_dir.parent}")


@main.command()
@click.argument("configs", nargs=-1, type=click.Path(dir_okay=False))
@click.option(
    "--models",
    help="Comma-separated checkpoints (directories, Hub names or packaged:...), each "
    "fine-tuned with --config's settings.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="YAML settings shared by the --models runs.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Reuse the comparison's finished runs and continue the others.",
)
@click.option("--overwrite", is_flag=True, help="Train every run again from scratch.")
@_config_options
@_reports_errors
@_loads_tensorflow
def compare(configs, models, config_file, resume, overwrite, **options) -> None:
    """Fine-tune several checkpoints or configs on the same data and tabulate the results.

    Give CONFIGS (one run each) or --models A,B,C. Other options apply to every run;
    --output-dir and --run-name name the comparison folder [default:
    saved_models/compare-<timestamp>]. Writes comparison.md, comparison.csv and
    comparison.png: macro F1, accuracy, train samples/s, inference texts/s, parameter
    count and wall time of each run.
    """
    from tf_finetune.serving import compare as comparison

    if configs and config_file:
        raise click.UsageError("--config goes with --models; config files replace it.")
    names = [m.strip() for m in models.split(",") if m.strip()] if models else []
    folder = comparison.comparison_folder(options.get("output_dir"), options.get("run_name"))
    entries = comparison.plan(list(configs), names, config_file, options, folder)
    _without_pytorch(any(entry.config.allow_pickle_weights for entry in entries))
    rows = comparison.compare(entries, folder, resume=resume, overwrite=overwrite)
    click.echo("\n" + comparison.markdown_table(rows))
    click.echo(f"Comparison: {folder} (comparison.md, comparison.csv, comparison.png)")
    failed = [row["run"] for row in rows if row.get("error")]
    if failed:
        raise click.ClickException(f"{len(failed)} run(s) failed: {', '.join(failed)}.")


@main.command()
@click.argument("runs_dir", default="saved_models", type=click.Path(file_okay=False))
@click.option("--port", default=6006, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; 0.0.0.0 serves other machines too.",
)
@_reports_errors
@_loads_tensorflow
def tensorboard(runs_dir: str, port: int, host: str) -> None:
    """Start TensorBoard over the runs in RUNS_DIR (default: saved_models)."""
    from tf_finetune.serving.dashboard import tensorboard as server

    board = server(runs_dir, port, host)
    url = board.launch()  # serves from a daemon thread
    click.echo(f"TensorBoard on {url} over {runs_dir}; Ctrl-C stops it.")
    _wait_for_a_stop_signal()
    click.echo("TensorBoard stopped.")
    # A normal interpreter exit could wait forever: TensorBoard's reload thread may be
    # inside TensorFlow's C++ file reading. The server has nothing to write.
    sys.stdout.flush()
    os._exit(0)


def _wait_for_a_stop_signal() -> None:
    """Returns once SIGTERM or Ctrl-C arrives.

    The handlers only set an event: an exception raised from a signal handler is lost
    when the signal lands in a destructor or garbage-collector callback (seen in CI: a
    server that went on serving after SIGTERM).
    """
    stop = threading.Event()
    for number in _STOP_SIGNALS:
        signal.signal(number, lambda number, frame: stop.set())
    while not stop.wait(0.5):
        pass


def _model_dir_argument(command):
    return click.argument("model_dir", type=click.Path(exists=True, file_okay=False))(command)


_batch_size_option = click.option(
    "--batch-size",
    default=64,
    show_default=True,
    type=click.IntRange(min=1),
    help="Texts per call of the model.",
)


def _column_options(command):
    command = click.option(
        "--text-pair-column", default=None, help="Column of the second texts, for pair models."
    )(command)
    return click.option(
        "--text-column", default="text", show_default=True, help="Column holding the texts."
    )(command)


@main.command()
@_model_dir_argument
@click.option("--text", "texts", multiple=True, help="A text to classify; repeat for more.")
@click.option(
    "--input",
    "input_file",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="A .csv, .tsv, .jsonl or .txt (one text per line) file of texts; - reads standard input.",
)
@click.option(
    "--input-format",
    type=click.Choice(["csv", "tsv", "jsonl", "txt"]),
    help="The input's format [default: from its name; txt for standard input].",
)
@_column_options
@click.option(
    "--output",
    type=click.Path(dir_okay=False),
    help="Write predictions to this .csv or .jsonl file instead of standard output. It is "
    "replaced only when every prediction is written.",
)
@_batch_size_option
@_reports_errors
@_loads_tensorflow
def predict(
    model_dir, texts, input_file, input_format, text_column, text_pair_column, output, batch_size
):
    """Classify texts with an exported model (MODEL_DIR: a run or SavedModel folder).

    Writes the label and the probability of every class per text. Needs only the
    SavedModel: the export tokenizes raw text itself.
    """
    from pathlib import Path

    from tf_finetune.serving import prediction

    if bool(texts) == bool(input_file):
        raise click.UsageError("Give either --text (one or more) or --input.")
    if output and Path(output).suffix.lower() not in prediction.OUTPUT_FORMATS:
        raise click.UsageError("--output must end in .csv or .jsonl.")
    if output and not Path(output).parent.is_dir():
        raise click.UsageError(
            f"--output's folder {Path(output).parent} does not exist. Create it first."
        )
    total = len(texts) if texts else prediction.estimate_rows(input_file)
    with click.progressbar(
        length=total or 0, label="Predicting", file=sys.stderr, show_pos=True
    ) as bar:
        count = prediction.predict(
            model_dir,
            output or sys.stdout,
            texts=list(texts) or None,
            input_file=input_file,
            input_format=input_format,
            text_column=text_column,
            pair_column=text_pair_column,
            batch_size=batch_size,
            on_batch=bar.update,
        )
    if output:
        click.echo(f"Wrote {count} predictions to {output}.", err=True)


@main.command()
@_model_dir_argument
@click.option(
    "--data",
    "data_file",
    required=True,
    type=click.Path(dir_okay=False),
    help="A labelled .csv, .tsv, .jsonl, .json or .parquet file.",
)
@_column_options
@click.option(
    "--label-column", default="label", show_default=True, help="Column holding the true labels."
)
@click.option(
    "--label-separator",
    default="|",
    show_default=True,
    help="Multi-label models: what joins a row's labels in a text cell (a JSON list needs none).",
)
@click.option(
    "--label-columns",
    help="Multi-label models: comma-separated 0/1 columns, one per label, named for it "
    "(instead of --label-column).",
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False),
    help="Folder for the report [default: <MODEL_DIR>/reports/<data name>].",
)
@_batch_size_option
@_reports_errors
@_loads_tensorflow
def report(
    model_dir,
    data_file,
    text_column,
    text_pair_column,
    label_column,
    label_separator,
    label_columns,
    output_dir,
    batch_size,
):
    """Score an exported model on a labelled file: report, confusion matrix, errors.

    Writes report.json, report.txt, confusion_matrix.png and misclassified.csv, from the
    SavedModel alone.
    """

    from tf_finetune.serving import prediction

    if label_column in (text_column, text_pair_column):
        raise click.UsageError(
            f"--label-column {label_column!r} is also the text column. Give each its own."
        )
    total = prediction.estimate_rows(data_file) or 0
    with click.progressbar(length=total, label="Scoring", file=sys.stderr, show_pos=True) as bar:
        result, directory = prediction.report(
            model_dir,
            data_file,
            output_dir,
            text_column=text_column,
            label_column=label_column,
            pair_column=text_pair_column,
            batch_size=batch_size,
            on_batch=bar.update,
            label_separator=label_separator,
            label_columns=[c.strip() for c in label_columns.split(",")] if label_columns else None,
        )
    click.echo(result["text"])
    click.echo(f"Misclassified: {len(result['misclassified']['texts'])} of {result['rows']}")
    click.echo(f"Report:        {directory}")


def run() -> None:
    """The `tf-finetune` process: runs the command, then ends the process at once.

    Once a command has returned, the interpreter's own shutdown took ~2.3 s tearing
    down TensorFlow's objects one by one (measured after a MiniLM fit, with nothing
    left to write). The exit handlers (`atexit`: logging's flush, temporary folders)
    still run first.
    """
    try:
        main()
        code = 0
    except SystemExit as stop:
        code = stop.code
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    os._exit(code or 0)
