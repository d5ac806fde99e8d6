"""SentencePiece Unigram (ALBERT, XLM-RoBERTa, ...) inside the TensorFlow graph, core ops only.

    text -> string replacements (regex) -> per-character maps (tables), read off the
         normalizer one code point at a time; SentencePiece's charsmap grapheme by
         grapheme (`charsmap`) -> strip, collapse spaces (regex)
         -> Metaspace: spaces as "▁", "▁" before the text, a word at each "▁"
         -> Viterbi over the pieces' scores (the best-scoring segmentation of each
            word; a character no piece covers is <unk>, consecutive ones fused)
         -> truncate -> the post-processor's special tokens

The per-character maps reproduce normalizers that act on one character at a time
(NFKD, NFD, accent stripping, lower-casing); NFKD's reordering of combining marks is
not reproduced (ALBERT strips the marks it would reorder).
"""

from __future__ import annotations

import dataclasses
import json
import re

import tensorflow as tf

from tf_finetune.export import charsmap
from tf_finetune.export.byte_level_bpe import CUT, WHITESPACE
from tf_finetune.export.graph_tokenizer import (
    TemplatedTokenizer,
    character_table,
    keep_where,
    map_characters,
)
from tf_finetune.export.tokenizer_tables import (
    Template,
    UnsupportedTokenizer,
    normalized_alone,
    read_template,
    unmatched_added_tokens,
)

_PER_CHARACTER = {"NFKD", "NFD", "StripAccents", "Lowercase", "Precompiled"}
_UNK_PENALTY = 10.0  # the tokenizers library's K_UNK_PENALTY


@dataclasses.dataclass
class UnigramTables:
    """Everything the graph needs, read off a SentencePiece Unigram fast tokenizer."""

    before: list[tuple[str, str]]  # (RE2 pattern, replacement) before the map
    ahead: dict[str, str]  # characters the steps before the charsmap change, alone
    mapped: dict[str, str]  # characters the charsmap and the steps after it change, alone
    clusters: dict[str, str] | None  # the charsmap's keys for short graphemes, if it has one
    after: list[tuple[str, str]]  # (RE2 pattern, replacement) after the map
    replacement: str
    prepend: bool
    pieces: list[str]
    scores: list[float]
    unk_id: int
    byte_pieces: list[int] | None  # with byte fallback: the id of "<0x00>" ... "<0xFF>"
    template: Template
    pad_id: int


def read_tables(tokenizer, spec: dict) -> UnigramTables:
    """Reads the tables of a SentencePiece Unigram tokenizer from its `tokenizer.json` spec.

    Raises:
        UnsupportedTokenizer: Naming each component the graph does not reproduce.
    """
    model, pre = spec.get("model") or {}, spec.get("pre_tokenizer") or {}
    if pre.get("type") == "Sequence" and len(pre.get("pretokenizers", [])) == 1:
        pre = pre["pretokenizers"][0]  # DeBERTa-v2 wraps its Metaspace
    missing = []
    before, per_character, after = _normalizer_stages(spec.get("normalizer"), missing)
    kinds = [step["type"] for step in per_character]
    split = kinds.index("Precompiled") if "Precompiled" in kinds else len(kinds)
    if kinds.count("Precompiled") > 1:
        missing.append("more than one Precompiled normalizer")
    if pre.get("type") != "Metaspace" or not pre.get("split", True):
        missing.append(f"the {pre.get('type')} pre-tokenizer (only Metaspace)")
    if pre.get("prepend_scheme", "always") not in ("always", "never"):
        missing.append(f"Metaspace prepend_scheme={pre.get('prepend_scheme')!r}")
    byte_pieces = None
    if model.get("byte_fallback"):
        ids = {piece: index for index, (piece, _) in enumerate(model["vocab"])}
        byte_pieces = [ids.get(f"<0x{byte:02X}>") for byte in range(256)]
        if None in byte_pieces:
            missing.append("Unigram byte_fallback without all 256 <0xXX> pieces")
    added = unmatched_added_tokens(spec)
    if added:
        missing.append(added)
    if model.get("unk_id") is None:
        missing.append("a Unigram model without an unknown piece")
    if missing:
        raise UnsupportedTokenizer(
            f"{type(tokenizer).__name__} is SentencePiece Unigram with parts the graph "
            f"tokenizer does not reproduce: {'; '.join(missing)}."
        )
    pieces = [piece for piece, _ in model["vocab"]]
    return UnigramTables(
        before=before,
        ahead=_per_character_map(spec, per_character[:split]),
        mapped=_per_character_map(spec, per_character[split:]),
        clusters=_cluster_keys(spec, per_character[split:]),
        after=after,
        replacement=pre.get("replacement", "▁"),
        prepend=pre.get("prepend_scheme", "always") == "always",
        pieces=pieces,
        scores=[float(score) for _, score in model["vocab"]],
        unk_id=model["unk_id"],
        byte_pieces=byte_pieces,
        template=read_template(tokenizer),
        pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
    )


def _normalizer_stages(normalizer, missing):
    """Splits the normalizer into regex stages around one per-character stage."""
    steps = (normalizer or {}).get("normalizers", [normalizer] if normalizer else [])
    before, per_character, after = [], [], []
    for step in steps:
        kind = step.get("type")
        if kind in _PER_CHARACTER and not after:
            per_character.append(step)
        elif kind == "Replace":
            pattern = step["pattern"]
            regex = pattern.get("Regex") or re.escape(pattern.get("String", ""))
            if not _runs_in_re2(regex):
                missing.append(f"the Replace pattern {regex!r} (not RE2 syntax)")
            (after if per_character else before).append((regex, step["content"]))
        elif kind == "Strip":
            stage = after if per_character else before
            if step.get("strip_left"):
                stage.append((f"^{WHITESPACE}+", ""))
            if step.get("strip_right"):
                stage.append((f"{WHITESPACE}+$", ""))
        else:
            missing.append(f"the {kind} normalizer at its place in the sequence")
    return before, per_character, after


def _runs_in_re2(pattern: str) -> bool:
    """Whether TensorFlow's regular expressions (RE2) take the pattern."""
    try:
        tf.strings.regex_replace("", pattern, "")
    except tf.errors.InvalidArgumentError:
        return False
    return True


def _normalizer(spec: dict, steps: list[dict]):
    """The tokenizers library's normalizer of these steps, and their settings."""
    from tokenizers import Tokenizer

    settings = {"type": "Sequence", "normalizers": steps}
    return Tokenizer.from_str(json.dumps(dict(spec, normalizer=settings))).normalizer, settings


def _per_character_map(spec: dict, steps: list[dict]) -> dict[str, str]:
    """What the per-character normalizers make of each code point alone."""
    if not steps:
        return {}
    return normalized_alone(*_normalizer(spec, steps))


def _cluster_keys(spec: dict, steps: list[dict]) -> dict[str, str] | None:
    """The charsmap's keys for short graphemes, valued after the steps behind it."""
    if not steps:
        return None
    keys = charsmap.trie_keys(steps[0]["precompiled_charsmap"])
    if len(steps) == 1:
        return keys
    behind, _ = _normalizer(spec, steps[1:])
    return {key: behind.normalize_str(value) for key, value in keys.items()}


class UnigramTokenizer(TemplatedTokenizer):
    """Tokenizes batches of strings as a SentencePiece Unigram fast tokenizer does.

    Args:
        tables: From `read_tables`.
        max_length: Tokens per example after truncation, special tokens included.
        truncation: Which tokens of a longer text are kept (`data.long_text`).
    """

    def __init__(self, tables: UnigramTables, max_length: int, truncation: str = "head"):
        super().__init__(tables.template, tables.pad_id, max_length, truncation)
        self._tables = tables
        self._ahead = character_table(tables.ahead)
        if tables.clusters is None:
            self._char_map = character_table(tables.mapped)
        else:
            self._charsmap = charsmap.GraphemeCharsmap(tables.mapped, tables.clusters)
        ids = {piece: index for index, piece in enumerate(tables.pieces)}  # the last wins, as in HF
        self._ids = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                list(ids), tf.constant(list(ids.values()), tf.int32)
            ),
            default_value=-1,
        )
        self._scores = tf.constant(tables.scores, tf.float64)
        self._unk_score = min(tables.scores) - _UNK_PENALTY
        self._longest = max(len(piece) for piece in tables.pieces)
        self._bytes = None
        if tables.byte_pieces:  # byte b -> the id of the piece "<0xBB>"
            self._bytes = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant([bytes([b]) for b in range(256)]),
                    tf.constant(tables.byte_pieces, tf.int32),
                ),
                default_value=tables.unk_id,
            )

    def token_ids(self, text: tf.Tensor) -> tf.RaggedTensor:
        """Tokenizes a batch of strings into ids `[batch, (tokens)]`."""
        words = self.words(text)
        distinct, index = tf.unique(words.flat_values)
        ids = self._viterbi(distinct)
        return words.with_flat_values(tf.gather(ids, index)).merge_dims(1, 2)

    def normalize(self, text: tf.Tensor) -> tf.Tensor:
        """Applies the normalizer's stages to a batch of strings."""
        for pattern, replacement in self._tables.before:
            text = tf.strings.regex_replace(text, pattern, _rewrite(replacement))
        if self._tables.ahead:
            text = map_characters(self._ahead, text)
        if self._tables.clusters is not None:
            text = self._charsmap(text)
        elif self._tables.mapped:
            text = map_characters(self._char_map, text)
        for pattern, replacement in self._tables.after:
            text = tf.strings.regex_replace(text, pattern, _rewrite(replacement))
        return text

    def words(self, text: tf.Tensor) -> tf.RaggedTensor:
        """Normalizes and splits a batch of strings as Metaspace does, `[batch, (words)]`."""
        mark = self._tables.replacement
        text = tf.strings.regex_replace(self.normalize(text), " ", mark)
        if self._tables.prepend:
            bare = (tf.strings.substr(text, 0, len(mark.encode())) != mark) & (text != "")
            text = tf.where(bare, mark + text, text)
        marked = tf.strings.regex_replace(text, re.escape(mark), CUT + mark.encode())
        words = tf.strings.split(marked, sep=CUT)
        return keep_where(words, tf.strings.length(words) > 0)

    def _viterbi(self, words: tf.Tensor) -> tf.RaggedTensor:
        """The best-scoring segmentation of each word into pieces, as ids `[words, (ids)]`."""
        codes, starts = tf.strings.unicode_decode_with_offsets(words, "UTF-8")
        lengths = tf.cast(codes.row_lengths(), tf.int32)
        ends = tf.expand_dims(tf.strings.length(words), 1)
        bounds = tf.concat([tf.cast(starts, tf.int32), ends], 1).to_tensor(default_value=0)
        width = tf.reduce_max(tf.concat([lengths, [0]], 0))
        k = tf.range(tf.minimum(self._longest, tf.maximum(width, 1)), 0, -1)  # longest first
        # Every candidate piece at once: the one of k characters ending at each character.
        end = tf.range(1, width + 1)
        start = end[:, None] - k[None, :]  # [ends, K]
        valid = (start >= 0)[None] & (end[None, :, None] <= lengths[:, None, None])
        at = tf.cast(
            tf.where(valid), tf.int32
        )  # only these are looked up: [candidates, (word, end, K)]
        first = tf.gather_nd(bounds, tf.stack([at[:, 0], tf.gather_nd(start, at[:, 1:])], 1))
        last = tf.gather_nd(bounds, tf.stack([at[:, 0], tf.gather(end, at[:, 1])], 1))
        found = self._ids.lookup(tf.strings.substr(tf.gather(words, at[:, 0]), first, last - first))
        ids = tf.scatter_nd(at, found + 1, tf.shape(valid)) - 1  # else -1
        score = tf.where(ids >= 0, tf.gather(self._scores, tf.maximum(ids, 0)), -float("inf"))
        # A character no single piece covers is <unk>.
        unknown = tf.equal(k, 1) & valid & (ids < 0)
        score = tf.where(unknown, tf.constant(self._unk_score, tf.float64), score)
        ids = tf.where(unknown, self._tables.unk_id, ids)
        score = tf.transpose(score, [1, 2, 0])  # [ends, K, words]
        before = tf.maximum(start, 0)

        def step(e, best, choices):
            total = best.gather(before[e]) + score[e]  # [K, words]
            choices = choices.write(e + 1, tf.argmax(total, axis=0, output_type=tf.int32))
            return e + 1, best.write(e + 1, tf.reduce_max(total, axis=0)), choices

        count = tf.shape(words)[0]
        best = tf.TensorArray(tf.float64, size=width + 1, element_shape=[None])
        best = best.write(0, tf.zeros([count], tf.float64))  # row e: best score up to char e
        # Row 0 is padding, so that no words still stack.
        choices = tf.TensorArray(tf.int32, size=width + 1).write(0, tf.zeros([count], tf.int32))
        _, _, choices = tf.while_loop(lambda e, *_: e < width, step, (0, best, choices))
        choice = tf.transpose(choices.stack())[:, 1:, None]
        # [words, ends]: the length and id of the best path's last piece up to each char
        last_length = tf.gather(k, choice[:, :, 0])
        last_id = tf.gather(ids, choice, batch_dims=2)[:, :, 0]
        steps, ends = self._backtrack(last_length, last_id, lengths)
        unknown = tf.equal(steps, self._tables.unk_id)
        if self._bytes is not None:
            return self._fall_back_to_bytes(words, bounds, steps, ends, unknown)
        # Consecutive <unk> pieces are one <unk>, as with the tokenizers library's fuse_unk.
        repeated = unknown & tf.concat([tf.zeros_like(unknown[:, :1]), unknown[:, :-1]], axis=1)
        return keep_where(steps, (steps >= 0) & ~repeated)

    def _backtrack(self, back, chosen, lengths):
        """Follows the best path back from each word's end.

        Returns:
            The path's pieces in order and the character each ends at, `[words, steps]`
            each, with -1 before a path shorter than the longest.
        """

        def step(position, pieces, ends):
            active = position > 0
            at = tf.maximum(position - 1, 0)[:, None]
            piece = tf.gather(chosen, at, batch_dims=1)[:, 0]
            pieces = pieces.write(pieces.size(), tf.where(active, piece, -1))
            ends = ends.write(ends.size(), tf.where(active, position, -1))
            length = tf.gather(back, at, batch_dims=1)[:, 0]
            return tf.where(active, position - length, position), pieces, ends

        none = tf.fill(tf.shape(lengths), -1)  # a first row keeps the stack well-shaped
        pieces, ends = (
            tf.TensorArray(tf.int32, size=0, dynamic_size=True).write(0, none) for _ in "ab"
        )
        _, pieces, ends = tf.while_loop(
            lambda position, *_: tf.reduce_any(position > 0), step, (lengths, pieces, ends)
        )
        return (tf.reverse(tf.transpose(array.stack()), [1]) for array in (pieces, ends))

    def _fall_back_to_bytes(self, words, bounds, steps, ends, unknown):
        """Each <unk> character as the pieces of its UTF-8 bytes, `<0xE2> <0x98> <0x83>`."""
        pieces = keep_where(steps, steps >= 0)
        unknown, ends = (keep_where(t, steps >= 0).values for t in (unknown, ends))
        word = tf.cast(pieces.value_rowids(), tf.int32)
        first = tf.gather_nd(bounds, tf.stack([word, ends - 1], 1))
        last = tf.gather_nd(bounds, tf.stack([word, ends], 1))
        chars = tf.strings.substr(tf.gather(words, word), first, tf.where(unknown, last - first, 0))
        as_bytes = tf.ragged.map_flat_values(self._bytes.lookup, tf.strings.bytes_split(chars))
        known = keep_where(pieces.values[:, None], ~unknown[:, None])
        return pieces.with_values(tf.concat([known, as_bytes], axis=1)).merge_dims(1, 2)


def _rewrite(replacement: str) -> str:
    """A literal replacement for `tf.strings.regex_replace` (backslashes escaped)."""
    return replacement.replace("\\", "\\\\")
