"""Tests of the truncation strategies' arithmetic (`long_text`)."""

import itertools

import pytest

from tf_finetune.data import long_text
from tf_finetune.data.tokenization import load_tokenizer
from tf_finetune.errors import ConfigError


def test_each_strategy_keeps_its_end_of_a_longer_text():
    assert long_text.kept_positions(10, 8, "head").tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    assert long_text.kept_positions(10, 8, "tail").tolist() == [2, 3, 4, 5, 6, 7, 8, 9]
    # A quarter of the budget from the head, the rest from the tail.
    assert long_text.kept_positions(10, 8, "head_tail").tolist() == [0, 1, 4, 5, 6, 7, 8, 9]
    assert long_text.kept_positions(510 + 90, 510, "head_tail")[126:128].tolist() == [126, 217]
    for strategy in long_text.TRUNCATIONS:
        assert long_text.kept_positions(5, 8, strategy).tolist() == [0, 1, 2, 3, 4]
        assert long_text.kept_positions(9, 0, strategy).tolist() == []


def test_pairs_share_the_budget_as_hugging_face_does(tiny_checkpoint):
    tokenizer = load_tokenizer(str(tiny_checkpoint))
    # An empty second text means "no pair" to Hugging Face: b starts at 1.
    for a, b, budget in itertools.product(range(7), range(1, 7), range(1, 9)):
        encoded = tokenizer(
            " ".join(["film"] * a), " ".join(["good"] * b), truncation=True, max_length=budget + 3
        )
        kept = [encoded.sequence_ids().count(s) for s in (0, 1)]
        assert list(long_text.longest_first(a, b, budget)) == kept, (a, b, budget)


def test_auto_follows_the_tokenizer_and_unknown_strategies_are_refused(tiny_checkpoint):
    tokenizer = load_tokenizer(str(tiny_checkpoint))
    assert long_text.resolve_truncation("auto", tokenizer) == "head"
    tokenizer.truncation_side = "left"
    assert long_text.resolve_truncation("auto", tokenizer) == "tail"
    assert long_text.resolve_truncation("head_tail", tokenizer) == "head_tail"
    with pytest.raises(ConfigError, match="'truncation' must be one of auto, head, tail"):
        long_text.resolve_truncation("middle", tokenizer)
