"""Tests of tokenization, max_length resolution and truncation."""

import datasets
import pytest
from conftest import FILLER, NEGATIVE, POSITIVE

from tf_finetune.data.tokenization import length_limit, load_tokenizer, tokenize
from tf_finetune.errors import ConfigError, ModelError


@pytest.fixture(scope="module")
def tokenizer(tiny_checkpoint):
    return load_tokenizer(str(tiny_checkpoint))


def splits(train_texts, pairs=None):
    columns = {"text": train_texts, "labels": [0] * len(train_texts)}
    if pairs is not None:
        columns["text_pair"] = pairs
    split = datasets.Dataset.from_dict(columns)
    return datasets.DatasetDict({"train": split, "validation": split})


def test_auto_is_the_longest_training_text(tokenizer):
    # [CLS] + words + [SEP]
    tokens = tokenize(
        splits(["good film", "the film was very dull ."]), tokenizer, "auto", "dynamic", limit=64
    )
    assert tokens.max_length == 8 and tokens.longest_train == 8
    assert [len(ids) for ids in tokens.splits["train"]["input_ids"][:]] == [4, 8]
    assert tokens.input_names == ["input_ids", "token_type_ids", "attention_mask"]
    # Stored compactly; the attention mask is made per batch from the lengths.
    features = tokens.splits["train"].features
    assert set(features) == {"labels", "input_ids", "token_type_ids"}
    assert features["input_ids"].feature.dtype == "int32"
    assert features["token_type_ids"].feature.dtype == "int8"


def test_auto_is_capped_at_the_model_limit_and_counts_truncation(tokenizer):
    long = " ".join(["film"] * 100)
    tokens = tokenize(splits([long, "good"]), tokenizer, "auto", "dynamic", limit=64)
    assert tokens.max_length == 64
    assert tokens.truncated["train"] == 1
    assert len(tokens.splits["train"]["input_ids"][0]) == 64


def test_max_length_padding_pads_every_example(tokenizer):
    tokens = tokenize(splits(["good", "the film was dull"]), tokenizer, 10, "max_length", limit=64)
    ids = tokens.splits["train"]["input_ids"][:]
    assert [len(x) for x in ids] == [10, 10]
    assert tokens.splits["train"]["attention_mask"][0] == [1, 1, 1] + [0] * 7


def test_explicit_max_length_truncates_and_is_capped(tokenizer):
    tokens = tokenize(
        splits(["the film was very dull and boring"]), tokenizer, 5, "dynamic", limit=64
    )
    assert len(tokens.splits["train"]["input_ids"][0]) == 5
    assert tokens.truncated["train"] == 1
    assert tokenize(splits(["good"]), tokenizer, 500, "dynamic", limit=64).max_length == 64


def test_text_pairs_get_segment_ids(tokenizer):
    tokens = tokenize(
        splits(["good film"], pairs=["bad plot"]), tokenizer, "auto", "dynamic", limit=64
    )
    row = tokens.splits["train"][0]
    assert row["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1]
    assert tokens.max_length == 7


def test_length_limit_falls_back_to_the_model_config(tokenizer):
    class Config:
        max_position_embeddings = 128

    assert length_limit(tokenizer, Config()) == 64  # the tokenizer's own limit
    tokenizer_without_limit = type("T", (), {"model_max_length": int(1e30)})()
    assert length_limit(tokenizer_without_limit, Config()) == 128


def test_missing_tokenizer_files(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ModelError, match="Cannot load a tokenizer from"):
        load_tokenizer(str(tmp_path))


def test_an_empty_text_is_kept_as_the_special_tokens_alone(tokenizer):
    tokens = tokenize(splits(["", "good film"]), tokenizer, "auto", "dynamic", limit=64)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert tokens.splits["train"]["input_ids"][0] == [cls, sep]
    assert len(tokens.splits["train"]) == 2


def test_one_pass_cuts_pairs_as_hugging_face_does(tokenizer):
    texts = ["the film was very dull and boring", "good", "a b c d e f g h i j k l"]
    pairs = ["bad plot", "the acting was lovely and very fine indeed", "x y"]
    for max_length in (6, 9, 64):
        tokens = tokenize(splits(texts, pairs), tokenizer, max_length, "dynamic", limit=64)
        expected = tokenizer(texts, pairs, truncation=True, max_length=max_length)
        for name in ("input_ids", "token_type_ids"):
            assert tokens.splits["train"][name][:] == expected[name]
        longer = sum(len(ids) > max_length for ids in tokenizer(texts, pairs)["input_ids"])
        assert tokens.truncated["train"] == longer


def test_a_second_run_reads_the_tokens_from_the_cache(tokenizer, tmp_path):
    data = splits(["good film", "the film was very dull ."])
    first = tokenize(data, tokenizer, "auto", "dynamic", limit=64, cache_dir=tmp_path)
    assert first.cached == 1 and len(list(tmp_path.glob("*.arrow"))) == 1  # validation is train
    again = tokenize(data, tokenizer, "auto", "dynamic", limit=64, cache_dir=tmp_path)
    assert again.cached == 2
    assert again.splits["train"]["input_ids"][:] == first.splits["train"]["input_ids"][:]
    assert (again.max_length, again.longest_train) == (first.max_length, first.longest_train)

    # What decides the tokens names the file: other texts, labels or a cut miss it.
    # (Validation is train's copy here, so it finds the file train has just written.)
    changed = splits(["good film", "the film was very dull !"])
    relabelled = datasets.DatasetDict(
        {name: split.map(lambda row: {"labels": 1}) for name, split in data.items()}
    )
    for other, max_length in ((changed, "auto"), (relabelled, "auto"), (data, 5)):
        assert tokenize(other, tokenizer, max_length, "dynamic", 64, tmp_path).cached == 1
    assert len(list(tmp_path.glob("*.arrow"))) == 4


def test_an_unusable_cache_warns_and_tokenizes_anyway(tokenizer, tmp_path, caplog):
    data = splits(["good film", "the film was very dull ."])
    expected = tokenize(data, tokenizer, "auto", "dynamic", 64).splits["train"]["input_ids"][:]

    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    tokens = tokenize(data, tokenizer, "auto", "dynamic", 64, cache_dir=blocked / "tokens")
    assert tokens.splits["train"]["input_ids"][:] == expected
    assert "as the token cache" in caplog.text

    cache = tmp_path / "cache"
    tokenize(data, tokenizer, "auto", "dynamic", 64, cache_dir=cache)
    (damaged,) = cache.glob("*.arrow")
    damaged.write_bytes(damaged.read_bytes()[:100])  # cut short
    tokens = tokenize(data, tokenizer, "auto", "dynamic", 64, cache_dir=cache)
    assert tokens.splits["train"]["input_ids"][:] == expected
    assert "unreadable" in caplog.text
    again = tokenize(data, tokenizer, "auto", "dynamic", 64, cache_dir=cache)
    assert again.cached == 2  # the damaged file was replaced


def test_the_same_rows_digest_the_same_however_they_are_chunked(tokenizer, tmp_path):
    import pyarrow

    texts = [f"review {i} " + "word " * (i % 7) for i in range(30)]
    whole = pyarrow.table({"text": texts, "labels": [i % 2 for i in range(30)]})
    chunked = pyarrow.Table.from_batches(whole.to_batches(max_chunksize=4))
    wider = pyarrow.table(
        {"text": pyarrow.array(texts, pyarrow.large_string()), "labels": whole["labels"]}
    )
    padded = pyarrow.table({"text": ["x", *texts], "labels": [0, *whole["labels"].to_pylist()]})
    digests = set()
    for table in (whole, chunked, wider):
        split = datasets.Dataset(datasets.table.InMemoryTable(table))
        digests.add(tokenize({"train": split}, tokenizer, 16, "dynamic", 64).digests["train"])
    shifted = datasets.Dataset(datasets.table.InMemoryTable(padded)).select(range(1, 31))
    digests.add(tokenize({"train": shifted}, tokenizer, 16, "dynamic", 64).digests["train"])
    assert len(digests) == 1
    moved = pyarrow.table({"text": texts[1:] + texts[:1], "labels": whole["labels"]})
    split = datasets.Dataset(datasets.table.InMemoryTable(moved))
    assert tokenize({"train": split}, tokenizer, 16, "dynamic", 64).digests["train"] not in digests


def test_the_side_texts_are_cut_on_decides_the_tokens_and_their_digest(tokenizer, monkeypatch):
    data = splits(["the film was very dull and far too long .", "good"])
    right = tokenize(data, tokenizer, 6, "dynamic", 64)
    monkeypatch.setattr(tokenizer, "truncation_side", "left")
    left = tokenize(data, tokenizer, 6, "dynamic", 64)
    expected = tokenizer(
        ["the film was very dull and far too long ."], truncation=True, max_length=6
    )
    assert left.splits["train"]["input_ids"][0] == expected["input_ids"][0]
    assert left.splits["train"]["input_ids"][0] != right.splits["train"]["input_ids"][0]
    assert left.digests["train"] != right.digests["train"]


# Twenty words, each one token of the tiny vocabulary.
WORDS = [*POSITIVE, *NEGATIVE, *FILLER]


@pytest.mark.parametrize(
    ("truncation", "kept"),
    [("head", WORDS[:8]), ("tail", WORDS[-8:]), ("head_tail", WORDS[:2] + WORDS[-6:])],
)
def test_each_strategy_keeps_its_tokens(tokenizer, truncation, kept):
    tokens = tokenize(splits([" ".join(WORDS)]), tokenizer, 10, "dynamic", 64, None, truncation)
    expected = tokenizer(" ".join(kept))["input_ids"]
    assert tokens.splits["train"]["input_ids"][0] == expected
    assert tokens.truncated == {"train": 1, "validation": 1}
    assert tokens.truncation == truncation


def test_tail_is_hugging_faces_left_side_for_texts_and_pairs(tokenizer, monkeypatch):
    texts, pairs = [" ".join(WORDS[:13]), "good film"], [" ".join(WORDS[5:]), " ".join(WORDS)]
    tokens = tokenize(splits(texts, pairs), tokenizer, 12, "dynamic", 64, None, "tail")
    monkeypatch.setattr(tokenizer, "truncation_side", "left")
    expected = tokenizer(texts, pairs, truncation=True, max_length=12)["input_ids"]
    assert tokens.splits["train"]["input_ids"][:] == expected


def test_head_tail_cuts_each_text_of_a_pair_within_its_share(tokenizer):
    text, pair = " ".join(WORDS[:12]), " ".join(WORDS[8:])
    tokens = tokenize(splits([text], [pair]), tokenizer, 15, "dynamic", 64, None, "head_tail")
    # 12 budget tokens: longest first leaves 6 + 6; each keeps 1 head and 5 tail tokens.
    expected = tokenizer(" ".join(WORDS[:1] + WORDS[7:12]), " ".join(WORDS[8:9] + WORDS[15:]))
    assert tokens.splits["train"]["input_ids"][0] == expected["input_ids"]
    assert tokens.splits["train"]["token_type_ids"][0] == expected["token_type_ids"]


def test_auto_cuts_the_other_splits_at_the_longest_training_text(tokenizer):
    data = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": ["good film ."], "labels": [0]}),
            "test": datasets.Dataset.from_dict(
                {"text": ["good", " ".join(WORDS)], "labels": [0, 1]}
            ),
        }
    )
    tokens = tokenize(data, tokenizer, "auto", "dynamic", 64, None, "tail")
    assert tokens.max_length == 5
    assert tokens.truncated == {"train": 0, "test": 1}
    # The report scores what the export, cut at max_length, will see.
    assert tokens.splits["test"]["input_ids"][1] == tokenizer(" ".join(WORDS[-3:]))["input_ids"]
    assert len(tokens.splits["test"]["input_ids"][0]) == 3


def test_the_strategy_is_part_of_the_digest_and_head_keeps_the_old_one(tokenizer):
    data = splits(["the film was very dull and far too long ."])
    digests = {
        truncation: tokenize(data, tokenizer, 6, "dynamic", 64, None, truncation).digests["train"]
        for truncation in ("auto", "head", "tail", "head_tail")
    }
    assert digests["auto"] == digests["head"]
    assert len(set(digests.values())) == 3


@pytest.mark.parametrize(("max_length", "stride"), [(10, 2), (10, 0), (7, 4), (12, 3)])
def test_windows_are_hugging_faces_overflowing_tokens(tokenizer, max_length, stride):
    texts = [" ".join(WORDS), "good film .", " ".join(WORDS[:11]), ""]
    tokens = tokenize(
        splits(texts), tokenizer, max_length, "dynamic", 64, None, windows=True, stride=stride
    )
    train = tokens.splits["train"]
    expected = tokenizer(
        texts, truncation=True, max_length=max_length, stride=stride,
        return_overflowing_tokens=True,
    )  # fmt: skip
    assert train["input_ids"][:] == expected["input_ids"]
    assert train["document"][:] == expected["overflow_to_sample_mapping"]
    documents = expected["overflow_to_sample_mapping"]
    assert train["window"][:] == [documents[:i].count(d) for i, d in enumerate(documents)]
    assert tokens.truncated["train"] == sum(documents.count(d) > 1 for d in range(4))
    assert tokens.stride == stride


def test_windows_default_stride_first_windows_and_pairs(tokenizer):
    tokens = tokenize(
        splits([" ".join(WORDS)]), tokenizer, 10, "dynamic", 64, None, windows=True, max_windows=2
    )
    assert tokens.stride == 2  # a quarter of the 8 text tokens of a window
    assert tokens.splits["train"]["window"][:] == [0, 1]
    assert tokens.splits["validation"]["window"][:] == [0, 1, 2]  # scored on every window
    with pytest.raises(ConfigError, match="'stride' must be less than the text tokens"):
        tokenize(splits(["good"]), tokenizer, 10, "dynamic", 64, None, windows=True, stride=8)
    with pytest.raises(ConfigError, match="windows takes single texts"):
        tokenize(splits(["good"], ["film"]), tokenizer, 10, "dynamic", 64, None, windows=True)
