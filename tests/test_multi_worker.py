"""fit under MultiWorkerMirroredStrategy: two local worker processes on loopback ports."""

import csv
import json
import os
import socket
import subprocess
import sys

import tensorflow as tf
import yaml
from conftest import tiny_fit_options

from tf_finetune.errors import WorkerLost
from tf_finetune.runtime import run_dir

TIMEOUT_SECONDS = 600


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for handle in sockets:
        handle.bind(("127.0.0.1", 0))
    ports = [handle.getsockname()[1] for handle in sockets]
    for handle in sockets:
        handle.close()
    return ports


def start_workers(config_file, tmp_path, extra_args=(), faults=(None, None)):
    """Starts `tf-finetune fit` as worker 0 and worker 1 of a two-worker cluster.

    `faults` holds each worker's `TF_FINETUNE_FAULT` (None for none).
    """
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    workers = []
    for index in range(2):
        temp = tmp_path / f"worker{index}-tmp"
        temp.mkdir(exist_ok=True)
        env = os.environ | {
            "TF_CONFIG": json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": index}}
            ),
            "TMPDIR": str(temp),
        }
        if faults[index]:
            env["TF_FINETUNE_FAULT"] = faults[index]
        command = [sys.executable, "-m", "tf_finetune", "fit", "--config", str(config_file)]
        workers.append(
            subprocess.Popen(
                [*command, *extra_args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True,
            )
        )  # fmt: skip
    return workers


def wait(workers):
    """Returns each worker's (exit code, stdout, stderr); kills both after the timeout."""
    try:
        return [(w.wait(TIMEOUT_SECONDS), *w.communicate()) for w in workers]
    finally:
        for worker in workers:
            worker.kill()


def scratch_dirs(temp):
    # TensorFlow's autograph leaves its own files in TMPDIR when a process is killed.
    return list(temp.glob(run_dir.SCRATCH_PREFIX + "*"))


def test_two_workers_train_resume_and_only_the_chief_writes(tiny_checkpoint, tmp_path):
    options = tiny_fit_options(tiny_checkpoint, tmp_path)
    # 3 per replica x 2 workers: global batches of 6, so every split ends in a partial
    # batch (128 = 21 x 6 + 2 train rows, 32 = 5 x 6 + 2 test rows).
    options.update(batch_size=3, epochs=4, strategy="multi_worker", checkpoint_steps=8)
    # XLA: the all-reduce stays outside the compiled step. Batches of one length: XLA
    # compiles each new shape. (Loss scaling in that step, float16's, is checked on one
    # device in test_models: here it cost 15 of the test's 93 s.)
    options.update(jit_compile=True, padding="max_length")
    # In global batches of 6 the tiny task sits on a plateau for two epochs (at 3e-3 a
    # run never left it in 3): a higher rate and a fourth epoch leave room.
    options.update(learning_rate=5e-3)
    config_file = tmp_path / "fit.yaml"
    config_file.write_text(yaml.safe_dump(options))
    run = tmp_path / "runs" / "tiny"

    # Both machines lose power after step 30; the last checkpoint is step 24's.
    crashed = wait(start_workers(config_file, tmp_path, faults=["step:30=kill"] * 2))
    codes = [code for code, _, _ in crashed]
    # A worker that sees the other die first stops with the lost-worker error (exit 10)
    # instead, having saved nothing more either (a loaded machine lets that happen).
    assert -9 in codes and set(codes) <= {-9, WorkerLost.exit_code}, crashed[0][2][-3000:]
    assert json.loads((run / "checkpoints" / "checkpoints.json").read_text()) == {
        "checkpoints": ["ckpt-22", "ckpt-24"]
    }
    if codes[1] == -9:
        assert len(scratch_dirs(tmp_path / "worker1-tmp")) == 1  # the killed worker's

    resumed = wait(start_workers(config_file, tmp_path, extra_args=["--resume"]))
    (chief_code, chief_out, chief_err), (code, out, err) = resumed
    assert chief_code == 0, chief_err[-3000:]
    assert code == 0, err[-3000:]

    assert sorted(os.listdir(tmp_path / "runs")) == ["tiny"]
    assert "This worker is done; the chief writes the run to" in out
    assert "Classification report" in chief_out
    # The non-chief's scratch directories (in its TMPDIR), the killed run's too, are
    # gone; the chief's run is whole.
    assert scratch_dirs(tmp_path / "worker1-tmp") == []
    assert not (run / "checkpoints").exists()
    stats = json.loads((run / "training_stats.json").read_text())
    assert stats["resumed_from_step"] == 24
    assert stats["optimizer_steps"] == 4 * 22  # global steps: ceil(128 / 6) per epoch
    resolved = yaml.safe_load((run / "fit_config.yaml").read_text())
    assert resolved["strategy"] == "multi_worker"

    # The export serves, and agrees with the chief's predictions row by row, so the
    # test split's batches were put back in order after they were shared out.
    served = tf.saved_model.load(str(run / "1")).signatures["serving_default"]
    with open(run / "predictions.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 32
    outputs = served(text=tf.constant([row["text"] for row in rows]))
    assert [label.decode() for label in outputs["label"].numpy()] == [
        row["predicted"] for row in rows
    ]
    written = [[float(row["p_neg"]), float(row["p_pos"])] for row in rows]
    assert abs(outputs["scores"].numpy() - written).max() < 1e-4
    report = json.loads((run / "report.json").read_text())
    assert report["accuracy"] >= 0.8, chief_err[-3000:]


def test_when_a_worker_dies_the_others_stop_with_a_one_line_error(tiny_checkpoint, tmp_path):
    options = tiny_fit_options(tiny_checkpoint, tmp_path)
    options.update(batch_size=4, epochs=3, strategy="multi_worker", checkpoint_steps=8)
    config_file = tmp_path / "fit.yaml"
    config_file.write_text(yaml.safe_dump(options))
    (chief_code, _, chief_err), (code, _, _) = wait(
        start_workers(config_file, tmp_path, faults=[None, "step:20=kill"])
    )
    assert code == -9
    assert chief_code == 10, chief_err[-3000:]  # WorkerLost
    message = chief_err.strip().splitlines()[-1]
    assert message == (
        "Error: Lost contact with another worker (worker 1 stopped answering). Start every "
        "worker again with the same command and --resume: they continue from the chief's "
        "last checkpoint."
    )
    assert (tmp_path / "runs" / "tiny" / "checkpoints" / "ckpt-16.index").is_file()
