"""Tests of reading WordPiece tables off a Hugging Face fast tokenizer."""

import pytest

from tf_finetune.export.tokenizer_tables import UnsupportedTokenizer, read_tables


def covers(ranges, char):
    return any(a <= ord(char) <= b for a, b in ranges)


def test_tables_of_an_uncased_bert_tokenizer(tiny_checkpoint):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    tables = read_tables(tokenizer)
    assert tables.vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert (tables.pad_id, tables.unk_id) == (0, 1)
    assert tables.template.single == ([(2, 0)], [(3, 0)])  # [CLS] a [SEP]
    assert tables.template.pair == ([(2, 0)], [(3, 0)], [(3, 1)])  # [CLS] a [SEP] b [SEP]
    assert (tables.template.a_type, tables.template.b_type) == (0, 1)
    assert (tables.prefix, tables.max_chars_per_word) == ("##", 100)
    # Control characters and U+FFFD are deleted; CJK gets spaces; NBSP becomes a space.
    assert covers(tables.deleted, "\x00") and covers(tables.deleted, "\ufffd")
    assert covers(tables.spaced, "中") and not covers(tables.spaced, "a")
    assert covers(tables.whitespace, "\u00a0") and covers(tables.whitespace, "\t")
    # Lower-casing and accent stripping, per character.
    assert tables.mapped["É"] == "e"
    assert tables.mapped["\u03a3"] == "\u03c3"  # capital to small sigma
    assert "a" not in tables.mapped
    assert covers(tables.punctuation, "!") and covers(tables.punctuation, "…")
    assert not covers(tables.punctuation, "a")


def test_byte_level_bpe_is_refused_by_name():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(vocab={"a": 0, "b": 1, "<unk>": 2}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    with pytest.raises(UnsupportedTokenizer, match="uses a BPE model; WordPiece"):
        read_tables(tokenizer)


def test_tables_are_probed_once_per_setting_and_each_reader_gets_its_own(tiny_checkpoint):
    from transformers import AutoTokenizer

    uncased = AutoTokenizer.from_pretrained(tiny_checkpoint)
    first = read_tables(uncased)
    first.mapped["É"] = "changed"
    first.punctuation.clear()
    again = read_tables(uncased)
    assert again.mapped["É"] == "e" and covers(again.punctuation, "!")
    # A cased tokenizer's normalizer has other settings, so other tables.
    cased = AutoTokenizer.from_pretrained(tiny_checkpoint, do_lower_case=False)
    assert read_tables(cased).mapped.get("É") is None


def test_added_tokens_that_are_not_special_are_refused_by_name(tiny_checkpoint):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    tokenizer.add_tokens(["<movie>"])
    with pytest.raises(
        UnsupportedTokenizer, match=r"added tokens that are not special \(<movie>\)"
    ):
        read_tables(tokenizer)


@pytest.mark.parametrize("lowercase", [True, False])
def test_batched_probes_read_what_each_code_point_alone_gives(monkeypatch, lowercase):
    from tokenizers import normalizers, pre_tokenizers

    from tf_finetune.export import tokenizer_tables

    # Every 11th code point, and the ones near the separators and the tricky cases:
    # the separator itself, whitespace, controls, accents, final sigma, dotted I, CJK.
    tricky = " \t\n\r\x00\x7f|!a\u0301\u00c9\u03a3\u0130\u4e2d\ufeff\U0001f600\U00020000"
    codes = sorted({*range(0, 0x110000, 11), *map(ord, tricky)} - set(range(0xD800, 0xE000)))
    monkeypatch.setattr(tokenizer_tables, "_code_points", lambda: iter(codes))
    monkeypatch.setattr(tokenizer_tables, "_PROBE_BATCH", 1000)
    normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    alone = {}
    for code in codes:
        out = normalizer.normalize_str(chr(code))
        if out != chr(code):
            alone[chr(code)] = out
    split = [c for c in codes if len(pre_tokenizer.pre_tokenize_str(f"a{chr(c)}a")) == 3]
    assert tokenizer_tables.normalized_alone.__wrapped__(normalizer) == alone
    assert tokenizer_tables._punctuation_ranges.__wrapped__(pre_tokenizer) == (
        tokenizer_tables._ranges(split)
    )
    assert "!" in "".join(chr(c) for c in split) and alone["\u4e2d"] == " \u4e2d "


@pytest.fixture
def new_process(tmp_path, monkeypatch):
    """A fresh cache folder, and no probe answers in memory (restored afterwards)."""
    from tf_finetune.export import tokenizer_tables

    monkeypatch.setenv("TF_FINETUNE_CACHE", str(tmp_path))
    probes = (tokenizer_tables.normalized_alone, tokenizer_tables._punctuation_ranges)
    saved = [dict(probe.answers) for probe in probes]

    def forget():
        for probe in probes:
            probe.answers.clear()

    forget()
    yield forget
    for probe, answers in zip(probes, saved, strict=True):
        probe.answers.clear()
        probe.answers.update(answers)


def test_probe_answers_are_kept_on_disk_for_the_next_process(
    tiny_checkpoint, tmp_path, new_process
):
    import json

    from transformers import AutoTokenizer

    from tf_finetune.export import tokenizer_tables

    normalize, punctuation = tokenizer_tables.normalized_alone, tokenizer_tables._punctuation_ranges
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    first = read_tables(tokenizer)
    probed = dict(normalize.answers)
    files = sorted((tmp_path / "tokenizer_tables").iterdir())
    assert [f.name.split("-")[0] for f in files] == ["normalized_alone", "punctuation_ranges"]

    class Unusable:  # probing it fails: an answer must come from its file
        def __getattr__(self, name):
            raise AssertionError(f"probed ({name}) although the answer was kept")

    new_process()
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    assert normalize(Unusable(), spec["normalizer"]) == next(iter(probed.values()))
    assert punctuation(Unusable(), spec["pre_tokenizer"]) == first.punctuation
    assert read_tables(tokenizer) == first
    # Other settings are other answers; an unreadable file is probed again.
    with pytest.raises(AssertionError, match="probed"):
        normalize(Unusable(), dict(spec["normalizer"], lowercase=False))
    files[1].write_text("{not json", encoding="utf-8")
    new_process()
    backend = tokenizer.backend_tokenizer
    assert punctuation(backend.pre_tokenizer, spec["pre_tokenizer"]) == first.punctuation
