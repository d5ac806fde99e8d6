"""Byte-level BPE in the graph must give exactly the Hugging Face fast tokenizer's ids."""

import json

import numpy as np
import pytest
from conftest import (
    PROBE_TEXTS,
    TINY,
    fit_and_compare_the_export,
    make_rows,
    save_tiny_model,
    serve_in_a_fresh_process,
)
from test_graph_tokenizer import (
    CORPUS_SHARES,
    EDGE_CASES,
    GRAPHEMES,
    REAL_CORPORA,
    graph_ids,
    hf_ids,
    mismatched,
    rotten_tomatoes_texts,
)

from tf_finetune.export import byte_level_bpe

# Whitespace runs before words, numbers and punctuation, in every Unicode space.
SPACES = [
    "two  spaces", "tab\tword", "tabs\t\tword", "space tab \tword", "tab space\t word",
    "new\n\nlines\n", "  lead", "trail  ", " ", "\u3000ideographic\u3000\u3000space",
    "nbsp\u00a0\u00a0word", "a \u2028 b", "x  1  y  !", "it's  they're 'll'd", "'S 'T",
]  # fmt: skip
MORE = [
    "Здравствуй, мир! Ελληνικά κείμενα", "مرحبا بالعالم", "नमस्ते दुनिया", "สวัสดีครับ",
    "👩‍👩‍👧‍👦 family 🏳️‍🌈 flag", "Ã©tÃ© mojibake", "\x80\x85\x9f C1 controls",
    "@handle #tag https://t.co/xYz?q=1", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
]  # fmt: skip


def train_tokenizer(folder, add_prefix_space):
    """A RoBERTa-style tokenizer with a byte-level BPE trained here on the tests' texts."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizerFast

    corpus = [text for text, _ in make_rows(400, 7)] + EDGE_CASES + SPACES + MORE
    trainer = ByteLevelBPETokenizer()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer.train_from_iterator(corpus * 3, vocab_size=600, special_tokens=specials)
    trainer.save(str(folder / "tokenizer.json"))
    return RobertaTokenizerFast(
        tokenizer_file=str(folder / "tokenizer.json"), add_prefix_space=add_prefix_space
    )


@pytest.fixture(scope="module", params=[False, True], ids=["no-prefix-space", "prefix-space"])
def tokenizer(request, tmp_path_factory):
    return train_tokenizer(tmp_path_factory.mktemp("bpe"), request.param)


def graph_of(tokenizer, max_length):

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    tables = byte_level_bpe.read_tables(tokenizer, spec)
    return byte_level_bpe.ByteLevelBpeTokenizer(tables, max_length)


def test_ids_match_hugging_face_on_edge_cases_and_pairs(tokenizer):
    texts = EDGE_CASES + SPACES + MORE
    for max_length in (16, 512):
        assert mismatched(graph_of(tokenizer, max_length), tokenizer, texts, max_length) == []
    assert mismatched(graph_of(tokenizer, 512), tokenizer, GRAPHEMES, 512) == []
    pairs = list(reversed(texts))
    graph = graph_of(tokenizer, 24)
    assert graph_ids(graph, texts, pairs) == hf_ids(tokenizer, texts, 24, pairs)


@pytest.mark.parametrize("corpus", REAL_CORPORA)
@pytest.mark.parametrize("share", CORPUS_SHARES)
def test_ids_match_on_real_text(corpus, share, tmp_path):
    # One corpus with a prefix space and one without: both settings meet real text.
    prefix_space = corpus is rotten_tomatoes_texts
    tokenizer = train_tokenizer(tmp_path, add_prefix_space=prefix_space)
    texts = corpus(share)
    wrong = mismatched(graph_of(tokenizer, 78), tokenizer, texts, 78)
    assert wrong == [], f"{len(wrong)} texts differ, e.g. {wrong[:3]!r}"


def test_parts_it_does_not_reproduce_are_named(tmp_path):

    tokenizer = train_tokenizer(tmp_path, add_prefix_space=False)
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    spec["model"]["dropout"] = 0.1
    spec["normalizer"] = {"type": "NFC"}
    with pytest.raises(byte_level_bpe.UnsupportedTokenizer) as error:
        byte_level_bpe.read_tables(tokenizer, spec)
    assert "the NFC normalizer" in str(error.value) and "BPE dropout=0.1" in str(error.value)


def test_a_roberta_fit_exports_raw_text_that_predicts_as_the_model(tmp_path):
    from transformers import (
        RobertaConfig,
        TFRobertaForSequenceClassification,
    )

    checkpoint = tmp_path / "tiny-roberta"
    checkpoint.mkdir()
    tokenizer = train_tokenizer(checkpoint, add_prefix_space=False)
    tokenizer.model_max_length = 64
    tokenizer.save_pretrained(checkpoint)
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=70,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.5,  # probabilities that differ between texts
        **TINY,
    )
    save_tiny_model(TFRobertaForSequenceClassification, config, checkpoint)

    run, expected = fit_and_compare_the_export(checkpoint, tmp_path)
    # A fresh process with TensorFlow alone serves it: every op is a core one.
    fresh = serve_in_a_fresh_process(run.saved_model_dir, PROBE_TEXTS)
    np.testing.assert_allclose(fresh, expected, atol=1e-5)
