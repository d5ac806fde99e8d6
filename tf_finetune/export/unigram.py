"""SentencePiece Unigram (ALBERT, XLM-RoBERTa, ...) inside the TensorFlow graph, core ops only.

    text -> string replacements (regex) -> per-character map (table), read off the
         normalizer one code point at a time -> strip, collapse spaces (regex)
         -> Metaspace: spaces as "▁", "▁" before the text, a word at each "▁"
         -> Viterbi over the pieces' scores (the best-scoring segmentation of each
            word; a character no piece covers is <unk>, consecutive ones fused)
         -> truncate -> the post-processor's special tokens

The per-character map reproduces normalizers that act on one character at a time
(NFKD, NFD, accent stripping, lower-casing, and the SentencePiece charsmap for single
characters). The charsmap's rules for character sequences (a letter and a combining
mark composed into one character, ...) are not reproduced: texts with them can differ.
"""

from __future__ import annotations

import dataclasses
import json
import re

import tensorflow as tf

from tf_finetune.export.byte_level_bpe import CUT, WHITESPACE
from tf_finetune.export.graph_tokenizer import (
    TemplatedTokenizer,
    character_table,
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
    mapped: dict[str, str]  # characters the normalizer changes, alone
    after: list[tuple[str, str]]  # (RE2 pattern, replacement) after the map
    replacement: str
    prepend: bool
    pieces: list[str]
    scores: list[float]
    unk_id: int
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
    if pre.get("type") != "Metaspace" or not pre.get("split", True):
        missing.append(f"the {pre.get('type')} pre-tokenizer (only Metaspace)")
    if pre.get("prepend_scheme", "always") not in ("always", "never"):
        missing.append(f"Metaspace prepend_scheme={pre.get('prepend_scheme')!r}")
    if model.get("byte_fallback"):
        missing.append("Unigram byte_fallback")
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
        mapped=_per_character_map(spec, per_character),
        after=after,
        replacement=pre.get("replacement", "▁"),
        prepend=pre.get("prepend_scheme", "always") == "always",
        pieces=pieces,
        scores=[float(score) for _, score in model["vocab"]],
        unk_id=model["unk_id"],
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


def _per_character_map(spec: dict, steps: list[dict]) -> dict[str, str]:
    """What the per-character normalizers make of each code point alone."""
    from tokenizers import Tokenizer

    if not steps:
        return {}
    settings = {"type": "Sequence", "normalizers": steps}
    normalizer = Tokenizer.from_str(json.dumps(dict(spec, normalizer=settings))).normalizer
    return normalized_alone(normalizer, settings)


class UnigramTokenizer(TemplatedTokenizer):
    """Tokenizes batches of strings as a SentencePiece Unigram fast tokenizer does.

    Args:
        tables: From `read_tables`.
        max_length: Tokens per example after truncation, special tokens included.
    """

    def __init__(self, tables: UnigramTables, max_length: int):
        super().__init__(tables.template, tables.pad_id, max_length)
        self._tables = tables
        self._char_map = character_table(tables.mapped)
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
        if self._tables.mapped:
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
        return tf.ragged.boolean_mask(words, tf.strings.length(words) > 0)

    def _viterbi(self, words: tf.Tensor) -> tf.RaggedTensor:
        """The best-scoring segmentation of each word into pieces, as ids `[words, (ids)]`."""
        codes, starts = tf.strings.unicode_decode_with_offsets(words, "UTF-8")
        lengths = tf.cast(codes.row_lengths(), tf.int32)
        ends = tf.expand_dims(tf.strings.length(words), 1)
        bounds = tf.concat([tf.cast(starts, tf.int32), ends], 1).to_tensor(default_value=0)
        count, width = tf.shape(words)[0], tf.reduce_max(tf.concat([lengths, [0]], 0))
        longest = tf.minimum(self._longest, tf.maximum(width, 1))
        k = tf.range(longest, 0, -1)  # piece lengths, longest first: ties keep it
        repeated = tf.tile(words[:, None], [1, longest])
        minus_inf = tf.constant(-float("inf"), tf.float64)

        def step(end, best, back, chosen):
            start = end - k  # [K]
            valid = (start[None, :] >= 0) & (end <= lengths)[:, None]
            first = tf.gather(bounds, tf.maximum(start, 0), axis=1)
            last = tf.gather(bounds, tf.fill([1], end), axis=1)
            size = tf.where(valid, last - first, 0)
            ids = tf.where(valid, self._ids.lookup(tf.strings.substr(repeated, first, size)), -1)
            score = tf.where(ids >= 0, tf.gather(self._scores, tf.maximum(ids, 0)), minus_inf)
            # A character no single piece covers is <unk>.
            unknown = tf.equal(k, 1)[None, :] & valid & (ids < 0)
            score = tf.where(unknown, tf.constant(self._unk_score, tf.float64), score)
            total = tf.transpose(tf.gather(best, tf.maximum(start, 0))) + score  # [words, K]
            choice = tf.argmax(total, axis=1, output_type=tf.int32)
            best = tf.tensor_scatter_nd_update(best, [[end]], [tf.reduce_max(total, axis=1)])
            back = back.write(end, tf.gather(k, choice))
            piece = tf.gather(tf.where(unknown, self._tables.unk_id, ids), choice, batch_dims=1)
            return end + 1, best, back, chosen.write(end, piece)

        best = tf.zeros([width + 1, count], tf.float64)  # row e: best score up to char e
        back = tf.TensorArray(tf.int32, size=width + 1).write(0, tf.zeros([count], tf.int32))
        chosen = tf.TensorArray(tf.int32, size=width + 1).write(0, tf.zeros([count], tf.int32))
        _, _, back, chosen = tf.while_loop(
            lambda end, *_: end <= width, step, (1, best, back, chosen)
        )
        # [words, width + 1]: the length and id of the best path's last piece up to each char
        return self._backtrack(tf.transpose(back.stack()), tf.transpose(chosen.stack()), lengths)

    def _backtrack(self, back, chosen, lengths):
        """Follows the best path back from each word's end; fuses consecutive <unk>."""

        def step(position, out):
            active = position > 0
            piece = tf.gather(chosen, tf.maximum(position, 0), batch_dims=1)
            out = out.write(out.size(), tf.where(active, piece, -1))
            length = tf.gather(back, tf.maximum(position, 0), batch_dims=1)
            return tf.where(active, position - length, position), out

        count = tf.shape(lengths)[0]
        out = tf.TensorArray(tf.int32, size=0, dynamic_size=True).write(0, tf.fill([count], -1))
        _, out = tf.while_loop(
            lambda position, out: tf.reduce_any(position > 0), step, (lengths, out)
        )
        steps = tf.reverse(tf.transpose(out.stack()), [1])  # [words, steps], path in order
        ids = tf.ragged.boolean_mask(steps, steps >= 0)
        # Consecutive <unk> pieces are one <unk>, as with the tokenizers library's fuse_unk.
        unk = tf.equal(ids, self._tables.unk_id)
        repeated = unk & tf.concat([tf.zeros_like(unk[:, :1]), unk[:, :-1]], axis=1)
        return tf.ragged.boolean_mask(ids, ~repeated)


def _rewrite(replacement: str) -> str:
    """A literal replacement for `tf.strings.regex_replace` (backslashes escaped)."""
    return replacement.replace("\\", "\\\\")
