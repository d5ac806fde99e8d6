"""Turning tokenized splits into batched `tf.data` pipelines with `Dataset.to_tf_dataset`."""

from __future__ import annotations

import datasets


def make_collator(tokenizer, padding: str):
    """Returns the batch collator for a padding mode.

    "max_length" examples are already padded, so the tutorial's `DefaultDataCollator`
    only stacks them; "dynamic" pads each batch to its longest example.
    """
    from transformers import DataCollatorWithPadding, DefaultDataCollator

    if padding == "max_length":
        return DefaultDataCollator(return_tensors="np")
    return DataCollatorWithPadding(tokenizer, return_tensors="np")


def to_tf_dataset(
    split: datasets.Dataset, input_names: list[str], collator, batch_size: int, shuffle: bool
):
    """Returns `(features, labels)` batches of a tokenized split.

    Shuffling draws its per-epoch order from TensorFlow's global seed, so
    `tf_keras.utils.set_random_seed` makes it reproducible.

    Args:
        split: A tokenized split with `labels`.
        input_names: Model input columns to feed.
        collator: From `make_collator`.
        batch_size: The global batch size (per replica times replicas).
        shuffle: Shuffle each epoch (training), or keep the split's order (evaluation,
            whose predictions are matched to labels by position).
    """
    return split.to_tf_dataset(
        columns=input_names,
        label_cols="labels",
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=collator,
        drop_remainder=False,
        prefetch=True,
    )
