"""Times one Adam update of all-MiniLM-L6-v2's variables: Keras' Adam against FusedAdam.

    .venv/bin/python benchmarks/probe_optimizer.py

The word embeddings get a sparse gradient (`tf.IndexedSlices` of 1,000 rows, about one
batch of 32 texts), as in training; every other variable a dense one.
"""

from __future__ import annotations

import os
import time

import numpy as np
import tensorflow as tf
import tf_keras

from tf_finetune.data import packaged
from tf_finetune.modeling import models
from tf_finetune.modeling.optimization import FusedAdam, create_slots


def main() -> None:
    path = str(packaged.model_path("packaged:all-MiniLM-L6-v2"))
    model = models.build_model(path, models.load_model_config(path, ["neg", "pos"]))
    variables = model.trainable_variables
    table = next(i for i, v in enumerate(variables) if "word_embeddings" in v.name)
    rng = np.random.default_rng(0)
    grads = [tf.constant(rng.normal(size=v.shape).astype("float32") * 1e-3) for v in variables]
    rows = tf.constant(rng.integers(0, variables[table].shape[0], 1000), tf.int32)
    grads[table] = tf.IndexedSlices(
        tf.constant(rng.normal(size=(1000, variables[table].shape[1])).astype("float32")),
        rows,
        tf.constant(variables[table].shape),
    )
    print("| optimizer | seconds per update of all variables |\n|---|---|")
    for name, optimizer in (
        ("tf_keras.optimizers.Adam", tf_keras.optimizers.Adam(1e-5)),
        ("FusedAdam", FusedAdam(1e-5)),
    ):
        if isinstance(optimizer, FusedAdam):
            create_slots(optimizer, variables)
        else:
            optimizer.build(variables)
        pairs = list(zip(grads, variables, strict=True))

        @tf.function
        def update(optimizer=optimizer, pairs=pairs):
            optimizer.apply_gradients(pairs)

        update()
        update()
        start = time.perf_counter()
        for _ in range(10):
            update()
        print(f"| {name} | {(time.perf_counter() - start) / 10:.3f} |")
    print(
        f"\nCommand: `.venv/bin/python benchmarks/probe_optimizer.py`; TensorFlow "
        f"{tf.__version__}, {os.cpu_count()} CPU cores, {time.strftime('%Y-%m-%d')}."
    )


if __name__ == "__main__":
    main()
