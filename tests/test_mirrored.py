"""fit under MirroredStrategy, over two logical CPU devices in a fresh process."""

import json
import subprocess
import sys
import textwrap

from conftest import tiny_fit_options

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tf_finetune import distribution
    from tf_finetune.config import load_config
    from tf_finetune.fit import fit

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    distribution.select_strategy = lambda: strategy
    result = fit(load_config(overrides=json.loads(sys.argv[1])))
    served = tf.saved_model.load(str(result.saved_model_dir)).signatures["serving_default"]
    outputs = served(text=tf.constant(["a good film", "dull and boring"]))
    probabilities = outputs["scores"]
    print(json.dumps({"replicas": strategy.num_replicas_in_sync,
                      "accuracy": result.report["accuracy"],
                      "epochs": len(result.history["loss"]),
                      "labels": [n.decode() for n in outputs["label"].numpy()],
                      "row_sum": float(tf.reduce_sum(probabilities))}))
    """
)


def test_fit_and_export_under_mirrored_strategy(tiny_checkpoint, tmp_path):
    options = tiny_fit_options(tiny_checkpoint, tmp_path)
    # 4 per replica x 2 replicas: the same global batch of 8 as the single-device recipe.
    options["batch_size"] = 4
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(options)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["epochs"] == 4
    assert result["accuracy"] >= 0.8
    assert abs(result["row_sum"] - 2.0) < 1e-5  # two rows of probabilities
    assert result["labels"] == ["pos", "neg"]
    assert (tmp_path / "runs" / "tiny" / "1" / "saved_model.pb").is_file()
