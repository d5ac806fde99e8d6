"""This process's place in a multi-worker cluster, read from `TF_CONFIG`.

`MultiWorkerMirroredStrategy` reads the cluster from the `TF_CONFIG` environment
variable, a JSON object such as

    {"cluster": {"worker": ["host1:12345", "host2:12345"]},
     "task": {"type": "worker", "index": 0}}

TensorFlow's own errors for a malformed one are tracebacks from deep inside the
strategy, so it is checked here first. The chief is the "chief" task, or worker 0 of a
cluster without one (Keras' rule): only it writes the run directory.
"""

from __future__ import annotations

import dataclasses
import json
import os

from tf_finetune.errors import ConfigError

# The tasks MultiWorkerMirroredStrategy trains with ("ps" and "evaluator" belong to
# other strategies).
TRAINING_TASKS = ("chief", "worker")
_EXAMPLE = (
    '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
    '"task": {"type": "worker", "index": 0}}'
)


@dataclasses.dataclass(frozen=True)
class ClusterTask:
    """One task of a cluster.

    Attributes:
        cluster: Task type -> addresses ("host:port"), as in `TF_CONFIG`.
        task_type: "chief" or "worker".
        index: This task's index among the tasks of its type.
    """

    cluster: dict[str, list[str]]
    task_type: str
    index: int

    @property
    def is_chief(self) -> bool:
        """Whether this task writes the run directory."""
        if self.task_type == "chief":
            return True
        return self.task_type == "worker" and self.index == 0 and "chief" not in self.cluster

    @property
    def workers(self) -> int:
        """The number of processes that train."""
        return sum(len(self.cluster.get(kind, [])) for kind in TRAINING_TASKS)

    def __str__(self) -> str:
        return f"{self.task_type} {self.index} of {self.workers} workers"


def read_tf_config(environ=None) -> ClusterTask | None:
    """Returns this process's task in `TF_CONFIG`, or None when it names no cluster.

    Raises:
        ConfigError: `TF_CONFIG` is not JSON, or its cluster or task is malformed.
    """
    raw = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        spec = json.loads(raw)
    except ValueError as error:
        raise ConfigError(
            f"TF_CONFIG is not valid JSON ({error}). Set it to an object like {_EXAMPLE}."
        ) from None
    if not isinstance(spec, dict):
        raise ConfigError(f"TF_CONFIG must be a JSON object like {_EXAMPLE}.")
    cluster = spec.get("cluster") or {}
    if not cluster:
        return None
    if not isinstance(cluster, dict) or not all(
        isinstance(v, list) and all(isinstance(a, str) for a in v) for v in cluster.values()
    ):
        raise ConfigError(
            "TF_CONFIG key 'cluster' must map task types to lists of 'host:port' "
            f"addresses. Received: {cluster!r}."
        )
    unknown = [kind for kind in cluster if kind not in TRAINING_TASKS]
    if unknown:
        raise ConfigError(
            f"TF_CONFIG key 'cluster' has task type {unknown[0]!r}; tf-finetune trains with "
            "'chief' and 'worker' tasks only (MultiWorkerMirroredStrategy)."
        )
    task = spec.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ConfigError(
            "TF_CONFIG key 'task' must name this process's task, e.g. "
            '{"type": "worker", "index": 0}. '
            f"Received: {task!r}."
        )
    kind, index = task["type"], task["index"]
    if kind not in cluster:
        raise ConfigError(
            f"TF_CONFIG task type {kind!r} is not in its cluster ({', '.join(cluster)})."
        )
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[kind]):
        raise ConfigError(
            f"TF_CONFIG task index {index!r} is out of range: the cluster has "
            f"{len(cluster[kind])} {kind} task(s), indexed from 0."
        )
    return ClusterTask({k: list(v) for k, v in cluster.items()}, kind, index)
