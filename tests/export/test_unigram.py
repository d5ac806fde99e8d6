"""SentencePiece Unigram in the graph against the Hugging Face fast tokenizer's ids."""

import json

import pytest
from conftest import (
    PROBE_TEXTS,
    TINY,
    fit_and_compare_the_export,
    make_rows,
    save_tiny_model,
    serve_in_a_fresh_process,
)
from test_byte_level_bpe import MORE, SPACES
from test_graph_tokenizer import (
    CORPUS_SHARES,
    EDGE_CASES,
    GRAPHEMES,
    REAL_CORPORA,
    graph_ids,
    hf_ids,
    mismatched,
)

from tf_finetune.export import unigram


def train_model(folder):
    """A real SentencePiece Unigram model (`.model` file), trained here."""
    import sentencepiece as spm

    corpus = [text for text, _ in make_rows(400, 7)] + EDGE_CASES + SPACES + MORE
    (folder / "corpus.txt").write_text("\n".join(corpus * 3), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(folder / "corpus.txt"),
        model_prefix=str(folder / "spm"),
        vocab_size=400,
        hard_vocab_limit=False,
        model_type="unigram",
        character_coverage=0.995,  # the rarest characters are <unk>
        pad_id=0,
        unk_id=1,
        bos_id=2,
        eos_id=3,
        minloglevel=2,
    )
    return folder / "spm.model"


@pytest.fixture(scope="module")
def sentencepiece_model(tmp_path_factory):
    return train_model(tmp_path_factory.mktemp("spm"))


def fast_tokenizer(name, model):
    import transformers

    return getattr(transformers, name)(vocab_file=str(model))


# Each converts a SentencePiece model with its own normalizer and template.
FAMILIES = [
    "XLMRobertaTokenizerFast",
    "AlbertTokenizerFast",
    "CamembertTokenizerFast",
    "DebertaV2TokenizerFast",
]


@pytest.fixture(scope="module", params=FAMILIES)
def tokenizer(request, sentencepiece_model):
    return fast_tokenizer(request.param, sentencepiece_model)


def graph_of(tokenizer, max_length):
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    return unigram.UnigramTokenizer(unigram.read_tables(tokenizer, spec), max_length)


def test_ids_match_hugging_face_on_edge_cases_and_pairs(tokenizer):
    texts = EDGE_CASES + SPACES + MORE
    assert mismatched(graph_of(tokenizer, 512), tokenizer, texts + GRAPHEMES, 512) == []
    pairs = list(reversed(texts))
    graph = graph_of(tokenizer, 24)
    assert graph_ids(graph, texts, pairs) == hf_ids(tokenizer, texts, 24, pairs)


@pytest.mark.parametrize("corpus", REAL_CORPORA)
@pytest.mark.parametrize("share", CORPUS_SHARES)
def test_ids_match_on_real_text(corpus, share, sentencepiece_model):
    # XLM-RoBERTa's normalizer is the SentencePiece charsmap on the raw text.
    tokenizer = fast_tokenizer("XLMRobertaTokenizerFast", sentencepiece_model)
    texts = corpus(share)
    wrong = mismatched(graph_of(tokenizer, 78), tokenizer, texts, 78)
    assert wrong == [], f"{len(wrong)} texts differ, e.g. {wrong[:3]!r}"


def test_an_albert_fit_exports_raw_text_that_predicts_as_the_model(tmp_path):
    import numpy as np
    from transformers import (
        AlbertConfig,
        AlbertTokenizerFast,
        TFAlbertForSequenceClassification,
    )

    checkpoint = tmp_path / "tiny-albert"
    checkpoint.mkdir()
    tokenizer = AlbertTokenizerFast(vocab_file=str(train_model(tmp_path)), model_max_length=64)
    tokenizer.save_pretrained(checkpoint)
    config = AlbertConfig(
        vocab_size=len(tokenizer),
        embedding_size=16,
        max_position_embeddings=64,
        initializer_range=0.5,  # probabilities that differ between texts
        **TINY,
    )
    save_tiny_model(TFAlbertForSequenceClassification, config, checkpoint)

    run, expected = fit_and_compare_the_export(checkpoint, tmp_path)
    # A fresh process with TensorFlow alone serves it: every op is a core one.
    fresh = serve_in_a_fresh_process(run.saved_model_dir, PROBE_TEXTS)
    np.testing.assert_allclose(fresh, expected, atol=1e-5)


def test_byte_fallback_spells_unknown_characters_in_bytes(sentencepiece_model):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    xlmr = fast_tokenizer("XLMRobertaTokenizerFast", sentencepiece_model)
    spec = json.loads(xlmr.backend_tokenizer.to_str())
    spec["model"]["byte_fallback"] = True
    spec["model"]["vocab"] += [[f"<0x{byte:02X}>", -20.0] for byte in range(256)]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)), pad_token="<pad>"
    )
    graph = unigram.UnigramTokenizer(unigram.read_tables(tokenizer, spec), 512)
    snowmen = graph_ids(graph, ["☃☃ x"])[0]
    assert tokenizer.convert_ids_to_tokens(snowmen[2:8]) == ["<0xE2>", "<0x98>", "<0x83>"] * 2
    texts = EDGE_CASES + SPACES + MORE + GRAPHEMES + ["<0x41> is a piece", "a\x00b"]
    assert mismatched(graph, tokenizer, texts, 512) == []

    del spec["model"]["vocab"][-1]  # no <0xFF>
    with pytest.raises(unigram.UnsupportedTokenizer, match=r"without all 256 <0xXX> pieces"):
        unigram.read_tables(tokenizer, spec)


def test_parts_it_does_not_reproduce_are_named(sentencepiece_model):
    tokenizer = fast_tokenizer("XLMRobertaTokenizerFast", sentencepiece_model)
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    spec["normalizer"]["normalizers"].append({"type": "NFKC"})
    spec["normalizer"]["normalizers"].insert(
        0, {"type": "Replace", "pattern": {"Regex": "a(?=b)"}, "content": ""}
    )
    with pytest.raises(unigram.UnsupportedTokenizer) as error:
        unigram.read_tables(tokenizer, spec)
    message = str(error.value)
    assert "the NFKC normalizer" in message
    assert "'a(?=b)' (not RE2 syntax)" in message
