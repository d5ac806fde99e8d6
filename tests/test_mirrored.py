"""fit under MirroredStrategy over two logical CPU devices, in a fresh process.

The CPU can be split into logical devices only before TensorFlow starts, so each test
runs a script in a new Python process and reads back what it measured.
"""

import json
import re
import shutil
import subprocess
import sys
import textwrap

import h5py
import numpy as np
from conftest import tiny_fit_options

BATCHES_SCRIPT = textwrap.dedent(
    """
    import json
    import datasets
    import numpy as np
    import tensorflow as tf
    from tf_finetune.runtime import distribution
    from tf_finetune.data import batching

    strategy = distribution.select_strategy("mirrored", "CPU:0,CPU:1")
    lengths = [3, 5, 4, 7, 2, 6, 5, 3, 4, 6]  # 10 examples: batches of 4, 4 and 2
    split = datasets.Dataset.from_dict({
        "input_ids": [[i + 1] * n for i, n in enumerate(lengths)],
        "attention_mask": [[1] * n for n in lengths],
        "labels": [i % 2 for i in range(len(lengths))],
    })
    batches = batching.grouped_batches(
        split, ["input_ids", "attention_mask"], {"input_ids": 0}, 4, group=True, seed=3)
    steps = []
    whole = list(batches.dataset)
    for (features, labels), (x, y) in zip(
            whole, strategy.experimental_distribute_dataset(batches.dataset)):
        parts = strategy.experimental_local_results(x["input_ids"])
        rejoined = np.concatenate([p.numpy() for p in parts])
        steps.append({"global": int(labels.shape[0]),
                      "replicas": [int(p.shape[0]) for p in parts],
                      "same_batch": bool(np.array_equal(rejoined, features["input_ids"].numpy()))})
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "steps": steps}))
    """
)

FIT_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from tf_finetune.config import load_config
    from tf_finetune.pipeline import fit

    results = []
    for overrides in json.loads(sys.argv[1]):
        result = fit(load_config(overrides=overrides))
        results.append({
            "accuracy": result.report["accuracy"],
            "epochs": len(result.history["loss"]),
            "optimizer_steps": result.stats["optimizer_steps"],
        })
    print(json.dumps(results))
    """
)


def run_script(script, *args, timeout=600):
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_each_replica_gets_its_half_of_every_global_batch():
    result = run_script(BATCHES_SCRIPT)
    assert result["replicas"] == 2
    assert [step["global"] for step in result["steps"]] == [4, 4, 2]
    # Each global batch is split in two, the last (partial) one too, and the halves
    # put together are the batch a single device trains on.
    assert [step["replicas"] for step in result["steps"]] == [[2, 2], [2, 2], [1, 1]]
    assert all(step["same_batch"] for step in result["steps"])


def read_weights(run_dir):
    """Returns a `save_pretrained` folder's weights by name, the model's instance name
    (`tf_bert_for_sequence_classification_3/...`) left out."""
    weights = {}

    def keep(name, item):
        if isinstance(item, h5py.Dataset):
            weights[re.sub(r"tf_bert_for_sequence_classification(_\d+)?", "", name)] = item[()]

    with h5py.File(run_dir / "tf_model.h5", "r") as handle:
        handle.visititems(keep)
    return weights


def test_two_replicas_train_the_same_weights_as_one_device(tiny_checkpoint, tmp_path):
    # Without dropout a step depends only on the batch, so two replicas of half the
    # global batch must take the same steps as one device with the whole batch.
    checkpoint = tmp_path / "no-dropout"
    shutil.copytree(tiny_checkpoint, checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (checkpoint / "config.json").write_text(json.dumps(config))
    base = tiny_fit_options(checkpoint, tmp_path)
    # 128 rows in global batches of 6: 21 full batches and one of 2 per epoch.
    base.update(epochs=1, learning_rate=1e-3)
    # The mirrored run goes first: the CPU is split before TensorFlow starts.
    runs = [
        {**base, "batch_size": 3, "strategy": "mirrored", "devices": "CPU:0,CPU:1",
         "run_name": "two-replicas"},
        {**base, "batch_size": 6, "run_name": "one-device"},
        # Mixed precision and XLA over replicas: test_multi_worker trains with both.
    ]  # fmt: skip
    # AdamW, a schedule, clipping and accumulation, on two replicas and on one device.
    controls = {
        "epochs": 1,
        "gradient_accumulation_steps": 2,
        "optimizer": "adamw",
        "clip_norm": 0.5,
        "lr_schedule": "linear",
        "warmup_steps": 2,
    }
    runs += [
        {**base, **controls, "batch_size": 3, "strategy": "mirrored", "devices": "CPU:0,CPU:1",
         "run_name": "two-replicas-accumulating"},
        {**base, **controls, "batch_size": 6, "run_name": "one-device-accumulating"},
    ]  # fmt: skip
    two, one, two_accumulating, one_accumulating = run_script(FIT_SCRIPT, json.dumps(runs))
    assert one["optimizer_steps"] == two["optimizer_steps"] == 22  # global steps
    single = read_weights(tmp_path / "runs" / "one-device")
    mirrored = read_weights(tmp_path / "runs" / "two-replicas")
    start = read_weights(checkpoint)
    assert single.keys() == mirrored.keys()
    moved = max(np.abs(single[k] - start[k]).max() for k in single)
    apart = max(np.abs(single[k] - mirrored[k]).max() for k in single)
    assert moved > 1e-2  # training changed the weights...
    # ...and the replicas changed them as one device did, up to the order of float32
    # sums, which varies from run to run (2.4e-7 and 1.5e-5 measured).
    assert apart < 1e-4
    assert abs(one["accuracy"] - two["accuracy"]) <= 1 / 32  # one test example at most
    # Accumulating 2 global batches of 6: 22 batches, 11 updates, the same on both.
    assert two_accumulating["optimizer_steps"] == one_accumulating["optimizer_steps"] == 11
    single = read_weights(tmp_path / "runs" / "one-device-accumulating")
    mirrored = read_weights(tmp_path / "runs" / "two-replicas-accumulating")
    assert max(np.abs(single[k] - start[k]).max() for k in single) > 1e-3
    assert max(np.abs(single[k] - mirrored[k]).max() for k in single) < 1e-4
