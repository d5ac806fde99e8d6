"""The model's forward pass, traced once for validation, the report and the export.

Keras' `predict` traces its predict function for the first batch shape it sees and
again, with the shapes relaxed, for the second; the export then traced the model a
third time. Each trace of MiniLM took 1.5-3.4 s on 2 CPU cores. `Forward` traces the
model once, over batches of any shape and with its transposes as einsums
(`transposes`), and every epoch's validation, the report and the export call that
one trace. The trace reads the model's variables when it runs, so it scores the
weights the model holds at that moment.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf_finetune.modeling import transposes


class Forward:
    """A model's float32 logits for a batch of token ids, as one traced function.

    Args:
        model: A Hugging Face TF sequence classifier on one device, not XLA-compiled.
        input_names: The token-id inputs it takes, in its tokenizer's names.

    Attributes:
        model: The model it runs.
        input_names: Its inputs.
        specs: Each input's `TensorSpec`: int32 `[batch, tokens]`, named as the input.
        function: The concrete function: a dict of those inputs -> float32 logits
            `[batch, classes]`.
    """

    def __init__(self, model, input_names):
        self.model = model
        self.input_names = list(input_names)
        self.specs = {
            name: tf.TensorSpec([None, None], tf.int32, name=name) for name in input_names
        }
        with transposes.traced_as_einsums():
            self.function = tf.function(
                lambda given: tf.cast(model(given, training=False).logits, tf.float32)
            ).get_concrete_function(self.specs)

    @property
    def compute_dtype(self) -> str:
        return self.model.compute_dtype

    def __call__(self, features: dict) -> tf.Tensor:
        """The logits of a batch of token ids (any integer type); `features` may hold
        more inputs than the model takes."""
        return self.function({name: tf.cast(features[name], tf.int32) for name in self.input_names})

    def logits(self, dataset: tf.data.Dataset) -> np.ndarray:
        """The logits `[N, classes]` of every batch of a `(features, labels)` dataset,
        in the dataset's order."""
        outputs = [self(features).numpy() for features, _ in dataset]
        if not outputs:
            return np.zeros((0, self.model.config.num_labels), np.float32)
        return np.concatenate(outputs)
