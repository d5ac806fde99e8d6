"""`tf-finetune tensorboard`: the real TensorBoard server over a folder of runs."""

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.request

import tensorflow as tf
from click.testing import CliRunner

from tf_finetune.cli import main

STARTUP_SECONDS = 120


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_run(runs, name):
    writer = tf.summary.create_file_writer(str(runs / name / "logs" / "validation"))
    with writer.as_default():
        for epoch, accuracy in enumerate([0.5, 0.75, 0.875]):
            tf.summary.scalar("epoch_accuracy", accuracy, step=epoch)
    writer.close()


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_the_server_lists_each_run_and_its_scalars(tmp_path):
    runs = tmp_path / "saved_models"
    write_run(runs, "first")
    write_run(runs, "second")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tf_finetune", "tensorboard", str(runs), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        listed = []
        while time.monotonic() < deadline and len(listed) < 2:
            assert server.poll() is None, server.communicate()[1][-2000:]
            with contextlib.suppress(OSError):  # not listening yet
                listed = get_json(f"{base}/data/runs")
            time.sleep(0.5)
        assert sorted(listed) == ["first/logs/validation", "second/logs/validation"]
        tags = get_json(f"{base}/data/plugin/scalars/tags")
        assert list(tags["first/logs/validation"]) == ["epoch_accuracy"]
        points = get_json(
            f"{base}/data/plugin/scalars/scalars?run=first/logs/validation&tag=epoch_accuracy"
        )
        assert [(step, value) for _, step, value in points] == [(0, 0.5), (1, 0.75), (2, 0.875)]
    finally:
        server.terminate()
        try:
            out, _ = server.communicate(timeout=30)
        finally:
            server.kill()
    assert server.returncode == 0
    assert out.splitlines()[-1] == "TensorBoard stopped."


def test_a_missing_folder_or_a_taken_port_is_a_one_line_error(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(main, ["tensorboard", str(tmp_path / "nowhere")])
    assert missing.exit_code == 3
    assert "Runs folder" in missing.output and "does not exist" in missing.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = runner.invoke(main, ["tensorboard", str(tmp_path), "--port", str(port)])
    assert busy.exit_code == 3
    assert f"Cannot listen on 127.0.0.1:{port}" in busy.output
    assert "Choose another --port" in busy.output
