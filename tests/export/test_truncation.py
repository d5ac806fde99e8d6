"""Every in-graph tokenizer cuts long texts as training does, for each strategy."""

import numpy as np
import pytest
from conftest import SHARED_DATA, make_rows
from test_byte_level_bpe import train_tokenizer
from test_graph_tokenizer import graph_ids, rotten_tomatoes_texts
from test_unigram import fast_tokenizer, train_model

from tf_finetune.data import tokenization
from tf_finetune.export.saved_model import _graph_tokenizer


@pytest.fixture(scope="module", params=["WordPiece", "byte-level BPE", "Unigram"])
def tokenizer(request, tiny_checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokenizer")
    if request.param == "WordPiece":
        return tokenization.load_tokenizer(str(tiny_checkpoint))
    if request.param == "byte-level BPE":
        return train_tokenizer(folder, add_prefix_space=True)
    return fast_tokenizer("XLMRobertaTokenizerFast", train_model(folder))


def texts():
    """Texts of 1 to 60 tokens: real ones where the shared data is there.

    The cut is what is tested here: every tokenizer's ids on real text are tested
    against Hugging Face's in its own module.
    """
    rows = [text for text, _ in make_rows(48, 5)]
    long = [" ".join(rows[i : i + 8]) for i in range(0, 48, 8)]
    real = rotten_tomatoes_texts(256)[:40] if SHARED_DATA.is_dir() else []
    return rows + long + real + [""]


def both_kinds(count, singles):
    """Whether at least a quarter of the texts are cut and a quarter are not (with or
    without the shared data's real texts)."""
    return len(singles) // 4 < count < len(singles) - len(singles) // 4


def test_graph_cuts_texts_as_training_does(tokenizer):
    # Head, the cut every family's own module tests, is the slice the others grow from.
    singles = texts()
    # The median length: half the texts are cut, half are not.
    max_length = int(np.median([len(ids) for ids in tokenizer(singles)["input_ids"]]))
    for truncation in ("tail", "head_tail"):
        graph, reason = _graph_tokenizer(tokenizer, max_length, truncation)
        assert reason is None
        expected = tokenization.encode(tokenizer, singles, max_length, truncation)
        assert graph_ids(graph, singles) == [e.ids for e in expected], truncation
        cut = sum(len(e.ids) == max_length for e in expected)
        assert both_kinds(cut, singles)


def test_graph_cuts_pairs_as_training_does(tiny_checkpoint):
    # A pair's budget is shared longest first, then each text is cut head and tail:
    # code every family shares, checked on one. An empty second text means "no pair".
    tokenizer = tokenization.load_tokenizer(str(tiny_checkpoint))
    singles = texts()
    pairs = singles[::-1]
    graph, _ = _graph_tokenizer(tokenizer, 16, "head_tail")
    inputs = [(a, b) if b else a for a, b in zip(singles, pairs, strict=True)]
    expected = tokenization.encode(tokenizer, inputs, 16, "head_tail")
    assert graph_ids(graph, singles, pairs) == [e.ids for e in expected]
    assert sum(len(e.ids) == 16 for e in expected) > 20


def test_graph_splits_texts_into_the_windows_training_makes(tokenizer):
    import tensorflow as tf

    singles = texts()
    max_length = int(np.median([len(ids) for ids in tokenizer(singles)["input_ids"]]))
    graph, _ = _graph_tokenizer(tokenizer, max_length, "head")
    for stride in (0, max_length // 3):
        ids, _, split, rows = tf.function(lambda t, s=stride: graph.windows(t, s))(
            tf.constant(singles)
        )
        expected = tokenization.windows(tokenizer, singles, max_length, stride)
        assert ids.to_list() == [e.ids for parts in expected for e in parts]
        assert rows.numpy().tolist() == [t for t, parts in enumerate(expected) for _ in parts]
        assert split.numpy().tolist() == [len(parts) > 1 for parts in expected]
        assert both_kinds(sum(len(parts) > 1 for parts in expected), singles)
