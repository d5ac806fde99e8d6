"""The `tf-finetune` command line: parses options, calls the library, prints the result.

TensorFlow and transformers are imported inside command bodies, so `--help` is instant.
"""

from __future__ import annotations

import functools
import logging
import os
import sys

import click

from tf_finetune import __version__
from tf_finetune.config import FIELDS, field_kind, load_config
from tf_finetune.errors import TfFinetuneError


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


@main.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="YAML file of settings; flags given on the command line override it.",
)
@_config_options
@_reports_errors
def fit(config_file: str | None, **options) -> None:
    """Fine-tune a checkpoint, report on the test split and export a SavedModel.

    With no options it fine-tunes the packaged all-MiniLM-L6-v2 checkpoint on the
    packaged Rotten Tomatoes critic quotes, fully offline.
    """
    config = load_config(config_file, options)

    from tf_finetune.fit import fit as run_fit

    quiet = click.get_current_context().find_root().params.get("quiet")
    progress = 0 if quiet else (1 if sys.stdout.isatty() else 2)
    result = run_fit(config, verbose=progress)
    click.echo(f"\nClassification report ({result.eval_split} split):\n")
    click.echo(result.report_text)
    click.echo(f"Run directory: {result.run_dir}")
    click.echo(f"SavedModel:    {result.saved_model_dir}")
    if result.raw_text_unsupported:
        click.echo(f"               takes token ids only: {result.raw_text_unsupported}")
    else:
        click.echo("               serving_default takes raw text")
    click.echo(f"TensorBoard:   tensorboard --logdir {result.log_dir}")
