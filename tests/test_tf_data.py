"""Tests of the tf.data pipelines built with to_tf_dataset and the collators."""

import numpy as np
import pytest

from tf_finetune.tf_data import make_collator, to_tf_dataset
from tf_finetune.tokenization import load_tokenizer, tokenize


@pytest.fixture(scope="module")
def tokenizer(tiny_checkpoint):
    return load_tokenizer(str(tiny_checkpoint))


def tokenized(tokenizer, padding, max_length="auto"):
    import datasets

    texts = ["good", "the film was dull", "bad", "a very lovely story and plot ."]
    split = datasets.Dataset.from_dict({"text": texts, "labels": [1, 0, 0, 1]})
    return tokenize(datasets.DatasetDict({"train": split}), tokenizer, max_length, padding, 64)


def batches(tokenizer, tokens, padding, batch_size, shuffle=False):
    collator = make_collator(tokenizer, padding)
    split = tokens.splits["train"]
    return to_tf_dataset(split, tokens.input_names, collator, batch_size, shuffle)


def test_dynamic_padding_pads_each_batch_to_its_longest(tokenizer):
    tokens = tokenized(tokenizer, "dynamic")
    batched = list(batches(tokenizer, tokens, "dynamic", 2).as_numpy_iterator())
    assert [b[0]["input_ids"].shape for b in batched] == [(2, 6), (2, 9)]
    features, labels = batched[0]
    assert set(features) == {"input_ids", "token_type_ids", "attention_mask"}
    np.testing.assert_array_equal(labels, [1, 0])
    np.testing.assert_array_equal(features["attention_mask"][0], [1, 1, 1, 0, 0, 0])


def test_max_length_padding_keeps_a_fixed_shape(tokenizer):
    tokens = tokenized(tokenizer, "max_length", max_length=12)
    data = batches(tokenizer, tokens, "max_length", 3)
    shapes = [b[0]["input_ids"].shape for b in data.as_numpy_iterator()]
    assert shapes == [(3, 12), (1, 12)]  # the remainder is kept


def test_shuffling_is_seeded(tokenizer):
    import tf_keras

    tokens = tokenized(tokenizer, "dynamic")

    def order(seed):
        tf_keras.utils.set_random_seed(seed)
        data = batches(tokenizer, tokens, "dynamic", 1, shuffle=True)
        return [
            int(b[1][0]) * 100 + int(b[0]["input_ids"].shape[1]) for b in data.as_numpy_iterator()
        ]

    assert order(1) == order(1)
    assert sorted(order(1)) == sorted(order(2))
