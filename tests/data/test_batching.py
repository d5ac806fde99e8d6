"""Tests of the batch plans and tf.data pipelines: grouped, dynamic and max_length."""

import numpy as np
import pytest

from tf_finetune.data.batching import (
    bucket_widths,
    collated_batches,
    grouped_batches,
    pad_values,
    padded_width,
    plan_batches,
    to_buckets,
)
from tf_finetune.data.tokenization import load_tokenizer, tokenize

TEXTS = ["good", "the film was dull", "bad", "a very lovely story and plot ."]


@pytest.fixture(scope="module")
def tokenizer(tiny_checkpoint):
    return load_tokenizer(str(tiny_checkpoint))


def tokenized(tokenizer, padding, texts=TEXTS, max_length="auto"):
    import datasets

    labels = [i % 2 for i in range(len(texts))]
    split = datasets.Dataset.from_dict({"text": texts, "labels": labels})
    return tokenize(datasets.DatasetDict({"train": split}), tokenizer, max_length, padding, 64)


def grouped(tokenizer, tokens, batch_size, **kwargs):
    split = tokens.splits["train"]
    return grouped_batches(split, tokens.input_names, pad_values(tokenizer), batch_size, **kwargs)


def test_plan_covers_every_example_once_per_epoch():
    lengths = np.random.default_rng(0).integers(1, 80, 1000)
    rng = np.random.default_rng(1)
    for group in (True, False):
        batches = plan_batches(lengths, 32, group, rng)
        assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
        assert [len(b) for b in batches] == [32] * 31 + [8]  # only the last is partial


def test_grouped_plans_pad_far_less_than_random_batches():
    lengths = np.random.default_rng(0).integers(5, 80, 4096)

    def padded(group):
        batches = plan_batches(lengths, 32, group, np.random.default_rng(1))
        return sum(lengths[b].max() * len(b) for b in batches) / lengths.sum() - 1

    assert padded(group=True) < 0.05 < 0.4 < padded(group=False)


def test_grouped_plans_still_mix_the_split_across_epochs():
    lengths = np.arange(4096) % 70 + 1
    rng = np.random.default_rng(1)
    first, second = (plan_batches(lengths, 32, True, rng) for _ in range(2))
    assert [b.tolist() for b in first] != [b.tolist() for b in second]
    # Batch order is shuffled: lengths do not rise steadily through an epoch.
    longest = [lengths[b].max() for b in first]
    assert longest != sorted(longest)


def test_evaluation_plans_keep_or_sort_the_split_order():
    lengths = np.array([5, 2, 9, 2])
    assert [b.tolist() for b in plan_batches(lengths, 2, False, None)] == [[0, 1], [2, 3]]
    assert [b.tolist() for b in plan_batches(lengths, 2, True, None)] == [[1, 3], [0, 2]]


@pytest.mark.parametrize(
    ("longest", "multiple", "cap", "width"),
    [(13, 8, 64, 16), (13, 1, 64, 13), (61, 8, 62, 62), (16, 8, 64, 16), (70, 8, 64, 70)],
)
def test_padded_width_rounds_up_without_passing_the_cap(longest, multiple, cap, width):
    assert padded_width(longest, multiple, cap) == width


def test_grouped_batches_pad_inside_the_graph_with_the_tokenizer_pad_values(tokenizer):
    tokens = tokenized(tokenizer, "grouped")
    batches = grouped(tokenizer, tokens, 2, group=True)
    out = list(batches.dataset.as_numpy_iterator())
    assert batches.steps == 2
    assert [b[0]["input_ids"].shape for b in out] == [(2, 3), (2, 9)]
    features, labels = out[0]
    assert set(features) == {"input_ids", "token_type_ids", "attention_mask"}
    split = tokens.splits["train"]
    # Sorted by length: "good" (0) and "bad" (2), each [CLS] word [SEP].
    np.testing.assert_array_equal(features["input_ids"][0], split[0]["input_ids"])
    np.testing.assert_array_equal(labels, [0, 0])
    long_ids = out[1][0]["input_ids"]
    short = len(split[1]["input_ids"])
    np.testing.assert_array_equal(long_ids[0, :short], split[1]["input_ids"])
    assert (long_ids[0, short:] == tokenizer.pad_token_id).all()
    assert (out[1][0]["attention_mask"][0, short:] == 0).all()


def test_evaluation_batches_restore_split_order(tokenizer):
    tokens = tokenized(tokenizer, "grouped")
    batches = grouped(tokenizer, tokens, 3, group=True)
    seen = np.concatenate(
        [b[1] * 10 + b[0]["attention_mask"].sum(1) for b in batches.dataset.as_numpy_iterator()]
    )
    lengths = [len(ids) for ids in tokens.splits["train"]["input_ids"][:]]
    expected = [label * 10 + n for label, n in zip([0, 1, 0, 1], lengths, strict=True)]
    np.testing.assert_array_equal(batches.restore_order(seen), expected)


def test_padding_statistics_count_every_fed_token(tokenizer):
    texts = TEXTS * 8
    tokens = tokenized(tokenizer, "grouped", texts)
    batches = grouped(
        tokenizer, tokens, 4, group=False, epochs=3, seed=5, pad_to_multiple_of=4, max_length=64
    )
    assert batches.steps == 8
    fed = [b[0]["input_ids"].size for b in batches.dataset.as_numpy_iterator()]
    real = [int(b[0]["attention_mask"].sum()) for b in batches.dataset.as_numpy_iterator()]
    assert len(fed) == 24  # three planned epochs, back to back
    for epoch in range(3):
        stats = batches.padding(epoch)
        assert stats.examples == 32
        assert stats.padded_tokens == sum(fed[epoch * 8 : (epoch + 1) * 8])
        assert stats.real_tokens == sum(real[epoch * 8 : (epoch + 1) * 8])
    assert all(b[0]["input_ids"].shape[1] % 4 == 0 for b in batches.dataset)


def test_buckets_feed_the_fewest_tokens_of_any_choice():
    import itertools

    rng = np.random.default_rng(1)
    for _ in range(20):
        widths, sizes = rng.integers(5, 40, 30), rng.integers(1, 5, 30)
        count = int(rng.integers(1, 5))
        buckets = bucket_widths(widths, sizes, count)
        assert len(buckets) <= count and buckets[-1] == widths.max()
        # Every choice of count - 1 buckets below the longest width, tried.
        values = np.unique(widths)
        fewest = min(
            (to_buckets(widths, np.array([*lower, values[-1]])) * sizes).sum()
            for r in range(count)
            for lower in itertools.combinations(values[:-1], r)
        )
        assert (to_buckets(widths, buckets) * sizes).sum() == fewest


def test_bucketed_batches_feed_at_most_that_many_lengths(tokenizer):
    texts = [" ".join(["word"] * n) for n in range(1, 41)]
    tokens = tokenized(tokenizer, "grouped", texts)
    free = grouped(tokenizer, tokens, 4, group=True, epochs=2, seed=0, max_length=64)
    bucketed = grouped(
        tokenizer, tokens, 4, group=True, epochs=2, seed=0, max_length=64, length_buckets=3
    )
    batches = list(bucketed.dataset.as_numpy_iterator())
    widths = [features["input_ids"].shape[1] for features, _ in batches]
    assert widths == bucketed.widths
    assert len(set(free.widths)) > 3 and len(set(widths)) <= 3
    # The same examples in the same order, each batch padded to a bucket that holds it.
    for (features, _), (unbucketed, _) in zip(
        batches, free.dataset.as_numpy_iterator(), strict=True
    ):
        np.testing.assert_array_equal(
            features["attention_mask"].sum(1), unbucketed["attention_mask"].sum(1)
        )
        assert features["input_ids"].shape[1] >= unbucketed["input_ids"].shape[1]
    assert bucketed.padding(0).padded_tokens == sum(w * 4 for w in widths[:10])
    assert free.padding(0).padded_tokens < bucketed.padding(0).padded_tokens


def test_a_partial_batch_takes_the_longest_bucket(tokenizer):
    texts = [" ".join(["word"] * n) for n in range(1, 11)]
    tokens = tokenized(tokenizer, "dynamic", texts)
    options = {"group": False, "seed": 0, "max_length": 64}
    free = grouped(tokenizer, tokens, 4, **options)
    bucketed = grouped(tokenizer, tokens, 4, length_buckets=2, **options)
    assert bucketed.steps == 3  # batches of 4, 4 and 2
    sizes = [len(labels) for _, labels in bucketed.dataset.as_numpy_iterator()]
    assert sizes[-1] == 2
    # Its own longest example would give it a length no full batch has.
    assert free.widths[-1] < max(free.widths)
    assert bucketed.widths[-1] == max(bucketed.widths)
    assert len(set(bucketed.widths)) <= 2


def test_shuffled_batches_repeat_with_the_seed_and_differ_by_epoch(tokenizer):
    tokens = tokenized(tokenizer, "grouped", TEXTS * 8)

    def order(seed):
        batches = grouped(tokenizer, tokens, 4, group=True, epochs=2, seed=seed)
        return [b[0]["input_ids"].sum(1).tolist() for b in batches.dataset.as_numpy_iterator()]

    assert order(1) == order(1)
    assert order(1) != order(2)
    assert order(1)[:8] != order(1)[8:]


def test_max_length_batches_keep_the_tutorial_fixed_shape(tokenizer):
    tokens = tokenized(tokenizer, "max_length", max_length=12)
    split = tokens.splits["train"]
    batches = collated_batches(split, tokens.input_names, 3)
    shapes = [b[0]["input_ids"].shape for b in batches.dataset.as_numpy_iterator()]
    assert shapes == [(3, 12), (1, 12)]  # the remainder is kept
    stats = batches.padding(0)
    assert (stats.examples, stats.padded_tokens) == (4, 48)
    assert stats.real_tokens == sum(sum(mask) for mask in split["attention_mask"][:])


def test_padded_splits_are_refused_by_grouped_batching(tokenizer):
    tokens = tokenized(tokenizer, "max_length", max_length=12)
    with pytest.raises(ValueError, match="'input_ids' is padded"):
        grouped(tokenizer, tokens, 2, group=True)


MANY = [" ".join(["good"] * (1 + i % 7)) + f" film {i % 3}" for i in range(22)]


def _rows(batches):
    """Each batch as its examples' token-id sums (identifies the examples fed)."""
    return [b[0]["input_ids"].sum(1).tolist() for b in batches.dataset.as_numpy_iterator()]


@pytest.mark.parametrize("padding", ["grouped", "dynamic", "max_length"])
def test_a_resumed_plan_feeds_exactly_the_batches_not_yet_trained(tokenizer, padding):
    tokens = tokenized(tokenizer, padding, texts=MANY, max_length=12)
    split = tokens.splits["train"]

    def plan(first_step):
        if padding == "max_length":
            return collated_batches(
                split, tokens.input_names, 4, epochs=3, seed=5, first_step=first_step
            )
        group = padding == "grouped"
        return grouped(tokenizer, tokens, 4, group=group, epochs=3, seed=5, first_step=first_step)

    whole = _rows(plan(0))
    assert plan(0).steps == 6 and len(whole) == 18
    for first_step in (1, 6, 8, 17):
        assert _rows(plan(first_step)) == whole[first_step:]
