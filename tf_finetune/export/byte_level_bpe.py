"""Byte-level BPE (RoBERTa, GPT-2, BART, ...) inside the TensorFlow graph, in core ops only.

    text -> (prefix space) -> split as the ByteLevel pre-tokenizer's regular expression
         -> each piece's UTF-8 bytes as the byte-to-unicode characters
         -> BPE merges by rank (the lowest-ranked pair first, leftmost among equals)
         -> vocabulary ids -> truncate -> the post-processor's special tokens

The ByteLevel pre-tokenizer splits with

    's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+

RE2 (TensorFlow's regular expressions) has no lookahead. `\\s+(?!\\S)` only matters
before a non-space character, where it leaves the run's last whitespace character to
what follows; so each run of two or more whitespace characters before a non-space is
first cut before its last character, and the pattern without the lookahead then finds
the same pieces. `\\s` is spelled out as Unicode's White_Space, which RE2's `\\s` is not.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from tf_finetune.export.graph_tokenizer import TemplatedTokenizer, keep_where
from tf_finetune.export.tokenizer_tables import (
    Template,
    UnsupportedTokenizer,
    read_template,
    unmatched_added_tokens,
)

_SPACE = (
    r"\t\n\x0B\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}"
    r"\x{205F}\x{3000}"
)
# Unicode's White_Space, as Rust's char::is_whitespace and the tokenizers library's \s.
WHITESPACE, NOT_WHITESPACE = f"[{_SPACE}]", f"[^{_SPACE}]"
# A run of whitespace, then its last character and the non-space after it.
_LAST_WHITESPACE = f"({WHITESPACE}+)({WHITESPACE}{NOT_WHITESPACE})"
_PIECES = (
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+" + f"| ?[^{_SPACE}\\p{{L}}\\p{{N}}]+|{WHITESPACE}+"
)
# Never in UTF-8 text: marks where a piece starts.
CUT = b"\xff"
_NO_RANK = 2**31 - 1


@dataclasses.dataclass
class ByteLevelBpeTables:
    """Everything the graph needs, read off a byte-level BPE fast tokenizer."""

    vocab: dict[str, int]
    merges: list[str]  # "left right", by rank
    add_prefix_space: bool
    unk_id: int
    template: Template
    pad_id: int


def read_tables(tokenizer, spec: dict) -> ByteLevelBpeTables:
    """Reads the tables of a byte-level BPE tokenizer from its `tokenizer.json` spec.

    Raises:
        UnsupportedTokenizer: Naming each component the graph does not reproduce.
    """
    model, pre = spec.get("model") or {}, spec.get("pre_tokenizer") or {}
    missing = []
    if spec.get("normalizer"):
        missing.append(f"the {spec['normalizer'].get('type')} normalizer")
    if pre.get("type") != "ByteLevel" or not pre.get("use_regex", True):
        missing.append(f"the {pre.get('type')} pre-tokenizer (only ByteLevel with its regex)")
    for key in ("dropout", "continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            missing.append(f"BPE {key}={model[key]!r}")
    for key in ("byte_fallback", "ignore_merges"):
        if model.get(key):
            missing.append(f"BPE {key}")
    added = unmatched_added_tokens(spec)
    if added:
        missing.append(added)
    if missing:
        raise UnsupportedTokenizer(
            f"{type(tokenizer).__name__} is byte-level BPE with parts the graph tokenizer "
            f"does not reproduce: {'; '.join(missing)}."
        )
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    vocab = tokenizer.backend_tokenizer.get_vocab(with_added_tokens=True)
    unk = model.get("unk_token")
    return ByteLevelBpeTables(
        vocab=vocab,
        merges=merges,
        add_prefix_space=bool(pre.get("add_prefix_space")),
        unk_id=vocab.get(unk, -1) if unk else -1,
        template=read_template(tokenizer),
        pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
    )


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map of the 256 byte values to printable characters."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    codes, extra = dict(zip(printable, printable, strict=True)), 0
    for byte in range(256):
        if byte not in codes:
            codes[byte] = 256 + extra
            extra += 1
    return {byte: chr(code) for byte, code in codes.items()}


class ByteLevelBpeTokenizer(TemplatedTokenizer):
    """Tokenizes batches of strings as a byte-level BPE fast tokenizer does.

    Args:
        tables: From `read_tables`.
        max_length: Tokens per example after truncation, special tokens included.
        truncation: Which tokens of a longer text are kept (`data.long_text`).
    """

    def __init__(self, tables: ByteLevelBpeTables, max_length: int, truncation: str = "head"):
        super().__init__(tables.template, tables.pad_id, max_length, truncation)
        self._add_prefix_space = tables.add_prefix_space
        self._unk_id = tables.unk_id
        mapping = bytes_to_unicode()
        self._bytes = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant([bytes([b]) for b in range(256)]),
                tf.constant([mapping[b] for b in range(256)]),
            ),
            default_value="",
        )
        self._ranks = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tables.merges or [""], tf.range(max(len(tables.merges), 1), dtype=tf.int32)
            ),
            default_value=_NO_RANK,
        )
        tokens = list(tables.vocab)
        self._vocab = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tokens, tf.constant([tables.vocab[t] for t in tokens], tf.int32)
            ),
            default_value=-1,
        )

    def token_ids(self, text: tf.Tensor) -> tf.RaggedTensor:
        """Tokenizes a batch of strings into ids `[batch, (tokens)]`."""
        words = self.words(text)
        # Each distinct word of the batch is merged once.
        distinct, index = tf.unique(words.flat_values)
        symbols = self._merge(tf.strings.bytes_split(distinct))
        ids = self._vocab.lookup(symbols.flat_values)
        if self._unk_id >= 0:
            ids = tf.where(ids < 0, self._unk_id, ids)
        ids = symbols.with_flat_values(ids)
        ids = keep_where(ids, ids >= 0)  # no unknown token: dropped, as in HF
        return words.with_flat_values(tf.gather(ids, index)).merge_dims(1, 2)

    def words(self, text: tf.Tensor) -> tf.RaggedTensor:
        """Splits a batch of strings as the ByteLevel pre-tokenizer does, `[batch, (words)]`."""
        if self._add_prefix_space:
            # As in Hugging Face: a space before the text, unless it starts with one or
            # is empty.
            bare = (tf.strings.substr(text, 0, 1) != " ") & (text != "")
            text = tf.where(bare, " " + text, text)
        cut = tf.strings.regex_replace(text, _LAST_WHITESPACE, CUT + b"\\1" + CUT + b"\\2")
        parts = tf.strings.split(cut, sep=CUT)
        pieces = tf.strings.split(
            tf.strings.regex_replace(parts.flat_values, _PIECES, CUT + b"\\0"), sep=CUT
        )
        pieces = parts.with_flat_values(pieces).merge_dims(1, 2)
        return keep_where(pieces, tf.strings.length(pieces) > 0)

    def _merge(self, byte_rows: tf.RaggedTensor) -> tf.RaggedTensor:
        """Applies the BPE merges to each word, its bytes mapped to characters first.

        Each round merges, in every word, the occurrences of its lowest-ranked pair, the
        leftmost of two overlapping ones (the rest of a run like "a a a" waits a round).
        A merge creates a symbol that only later merges use, so this is the order of the
        tokenizers library's queue of (rank, position).
        """
        flat = self._bytes.lookup(byte_rows.flat_values)
        words = tf.cast(byte_rows.value_rowids(), tf.int32)
        count = tf.cast(byte_rows.nrows(), tf.int32)

        def merge_round(flat, words, _):
            same_word = tf.equal(words[1:], words[:-1])
            pairs = tf.strings.join([flat[:-1], flat[1:]], separator=" ")
            ranks = tf.where(same_word, self._ranks.lookup(pairs), _NO_RANK)
            lowest = tf.math.unsorted_segment_min(ranks, words[:-1], count)
            best = (ranks < _NO_RANK) & tf.equal(ranks, tf.gather(lowest, words[:-1]))
            first = best & ~tf.concat([[False], best[:-1]], axis=0)
            joins = tf.concat([[False], first], axis=0)  # symbol k joins symbol k - 1
            segment = tf.cumsum(tf.cast(~joins, tf.int32)) - 1
            total = tf.shape(flat)[0] - tf.reduce_sum(tf.cast(joins, tf.int32))
            flat = tf.strings.unsorted_segment_join(flat, segment, total)
            return flat, tf.boolean_mask(words, ~joins), tf.reduce_any(first)

        flat, words, _ = tf.while_loop(
            lambda flat, words, merged: merged,
            merge_round,
            (flat, words, tf.size(flat) > 1),
            shape_invariants=(tf.TensorShape([None]), tf.TensorShape([None]), tf.TensorShape([])),
        )
        return tf.RaggedTensor.from_value_rowids(
            flat, tf.cast(words, tf.int64), nrows=tf.cast(count, tf.int64)
        )
