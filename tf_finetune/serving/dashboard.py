"""Serving TensorBoard over a folder of runs: `tf-finetune tensorboard`."""

from __future__ import annotations

import socket
from pathlib import Path

from tf_finetune.errors import ConfigError


def tensorboard(runs_dir: str | Path, port: int = 6006, host: str = "127.0.0.1"):
    """Returns a configured TensorBoard server over the runs in `runs_dir`.

    Call `.launch()` on it to serve from a daemon thread; it returns the URL. Every
    run's `logs/` folder shows
    up as `<run>/logs/train` and `<run>/logs/validation`.

    Args:
        runs_dir: A folder of run directories (`saved_models`), or one run directory.
        port: The TCP port to listen on.
        host: The address to listen on; the default serves this machine only.

    Raises:
        ConfigError: `runs_dir` does not exist, or the port is taken.
    """
    from tensorboard import program

    runs = Path(runs_dir).expanduser()
    if not runs.is_dir():
        raise ConfigError(
            f"Runs folder {runs} does not exist. Pass the --output-dir of your fit runs "
            "(default: saved_models)."
        )
    _check_port_free(host, port)
    server = program.TensorBoard()
    server.configure(
        argv=[
            None,
            "--logdir",
            str(runs),
            "--port",
            str(port),
            "--host",
            host,
            "--load_fast",
            "false",
        ]
    )
    return server


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ConfigError(
                f"Cannot listen on {host}:{port} ({error.strerror}). Choose another --port."
            ) from None
