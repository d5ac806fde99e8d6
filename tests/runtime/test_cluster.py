"""Tests of reading TF_CONFIG: the cluster, this task, and which task is the chief."""

import json

import pytest

from tf_finetune.errors import ConfigError
from tf_finetune.runtime import cluster

TWO_WORKERS = {"worker": ["localhost:2001", "localhost:2002"]}


def task_of(spec):
    return cluster.read_tf_config({"TF_CONFIG": json.dumps(spec)})


def test_no_tf_config_or_no_cluster_means_a_single_process():
    assert cluster.read_tf_config({}) is None
    assert cluster.read_tf_config({"TF_CONFIG": "  "}) is None
    assert task_of({"cluster": {}, "task": {"type": "worker", "index": 0}}) is None


def test_worker_zero_is_the_chief_of_a_cluster_without_one():
    first = task_of({"cluster": TWO_WORKERS, "task": {"type": "worker", "index": 0}})
    second = task_of({"cluster": TWO_WORKERS, "task": {"type": "worker", "index": 1}})
    assert first.is_chief and not second.is_chief
    assert first.workers == second.workers == 2
    assert str(second) == "worker 1 of 2 workers"


def test_a_chief_task_is_the_chief_and_worker_zero_is_not():
    spec = {"chief": ["localhost:2000"], **TWO_WORKERS}
    assert task_of({"cluster": spec, "task": {"type": "chief", "index": 0}}).is_chief
    worker = task_of({"cluster": spec, "task": {"type": "worker", "index": 0}})
    assert not worker.is_chief
    assert worker.workers == 3


@pytest.mark.parametrize(
    "raw, message",
    [
        ("{not json", "TF_CONFIG is not valid JSON"),
        ("[1, 2]", "TF_CONFIG must be a JSON object"),
        (json.dumps({"cluster": {"worker": "localhost:1"}}), "lists of 'host:port'"),
        (json.dumps({"cluster": {"ps": ["a:1"], **TWO_WORKERS}}), "task type 'ps'"),
        (json.dumps({"cluster": TWO_WORKERS}), "key 'task' must name this process's task"),
        (
            json.dumps({"cluster": TWO_WORKERS, "task": {"type": "chief", "index": 0}}),
            "task type 'chief' is not in its cluster (worker)",
        ),
        (
            json.dumps({"cluster": TWO_WORKERS, "task": {"type": "worker", "index": 2}}),
            "task index 2 is out of range: the cluster has 2 worker task(s)",
        ),
    ],
)
def test_malformed_tf_config_is_a_one_line_config_error(raw, message):
    with pytest.raises(ConfigError) as caught:
        cluster.read_tf_config({"TF_CONFIG": raw})
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
