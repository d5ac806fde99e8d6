"""SentencePiece's precompiled charsmap inside the TensorFlow graph, grapheme by grapheme.

The Hugging Face `Precompiled` normalizer (SentencePiece's `nmt_nfkc` and the like)
splits text into extended grapheme clusters. A cluster shorter than 6 bytes whose start
is a key of the charsmap's trie is replaced as a whole by the value of its *shortest*
such key (so "g" + U+0327 becomes "ģ", and fullwidth A (U+FF21) + U+0301 becomes "A": the
mark is dropped); every other cluster is mapped one code point at a time. Per-code-point
maps are tables read off the normalizer (`tokenizer_tables.normalized_alone`); this
module adds the cluster rule:

    code points -> grapheme-cluster break classes (range table, `tf.searchsorted`)
      -> clusters (the pairwise rules GB3-GB9b: CR LF, controls, Hangul syllables,
         Extend / ZWJ / SpacingMark, Prepend) -> for clusters of 2+ code points under
         6 bytes, their prefixes looked up, the shortest found wins -> joined

Clusters joined by emoji ZWJ sequences (GB11), regional-indicator pairs (GB12/13) and
Indic conjuncts (GB9c) are not formed: they are 6 bytes or more, so mapped code point
by code point either way, except when a combining mark follows such a joined character.
"""

from __future__ import annotations

import base64
import functools
import struct

import numpy as np
import tensorflow as tf

from tf_finetune.export.graph_tokenizer import character_table

_SHORT = 6  # clusters of fewer bytes are looked up whole
_CLASSES = ("Other", "CR", "LF", "Control", "Extend", "ZWJ", "SpacingMark", "Prepend")
_HANGUL = ("L", "V", "T", "LV", "LVT")
OTHER, CR, LF, CONTROL, EXTEND, ZWJ, SPACING_MARK, PREPEND, L, V, T, LV, LVT = range(13)
_NOT_FOUND = "\x00"  # no value contains NUL: the charsmap's strings end at one


def trie_keys(charsmap: str) -> dict[str, str]:
    """The charsmap's keys a cluster under 6 bytes can reach, with their values.

    Those are keys of under 6 bytes with no shorter key as their prefix (the shortest
    key wins). The trie is darts-clone's double array, as SentencePiece writes it.
    """
    blob = base64.b64decode(charsmap)
    (size,) = struct.unpack("<I", blob[:4])
    units = np.frombuffer(blob[4 : 4 + size], dtype="<u4").astype(np.int64)
    pool = blob[4 + size :]
    label = units & ((1 << 31) | 0xFF)
    offset = (units >> 10) << ((units & (1 << 9)) >> 6)
    has_leaf = (units >> 8) & 1 == 1
    labels = np.arange(1, 256, dtype=np.int64)
    keys = {}
    nodes, prefixes = np.array([offset[0]]), [b""]
    for _ in range(_SHORT - 1):  # one byte a level
        children = nodes[:, None] ^ labels[None, :]
        inside = children < len(units)
        hit = np.zeros_like(inside)
        hit[inside] = label[children[inside]] == np.broadcast_to(labels, children.shape)[inside]
        parent, byte = np.nonzero(hit)
        child = children[parent, byte]
        after = child ^ offset[child]
        leaf = has_leaf[child]
        for index in np.nonzero(leaf)[0]:
            start = int(units[after[index]] & ((1 << 31) - 1))
            key = prefixes[parent[index]] + bytes([byte[index] + 1])
            keys[key.decode("utf-8")] = pool[start : pool.index(b"\0", start)].decode("utf-8")
        nodes = after[~leaf]  # below a key, longer keys are never the shortest
        prefixes = [
            prefixes[p] + bytes([b + 1]) for p, b in zip(parent[~leaf], byte[~leaf], strict=True)
        ]
    return keys


@functools.lru_cache(maxsize=1)
def break_classes() -> tuple[list[int], list[int]]:
    """Grapheme-cluster break classes as ranges: (first code point, class) in order."""
    import regex  # a dependency of transformers: the export runs next to it

    everything = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)
    marks = np.full(0x110000, OTHER, np.int32)
    for number, name in enumerate(_CLASSES[1:] + _HANGUL, start=1):
        for run in regex.finditer(rf"\p{{Grapheme_Cluster_Break={name}}}+", everything):
            first, last = ord(run.group()[0]), ord(run.group()[-1])
            marks[first : last + 1] = number
    starts = np.flatnonzero(np.diff(marks, prepend=-1))
    return starts.tolist(), marks[starts].tolist()


class GraphemeCharsmap(tf.Module):
    """The charsmap step (and per-code-point steps after it) over a batch of strings.

    Args:
        mapped: What each code point alone becomes, for those that change.
        keys: The cluster prefixes that are replaced, with what replaces the cluster
            (after the steps behind the charsmap).
    """

    def __init__(self, mapped: dict[str, str], keys: dict[str, str]):
        super().__init__()
        self._chars = character_table(mapped)
        self._keys = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                list(keys) or [_NOT_FOUND], list(keys.values()) or [""]
            ),
            default_value=_NOT_FOUND,
        )
        starts, classes = break_classes()
        self._starts = tf.constant(starts, tf.int32)
        self._classes = tf.constant(classes, tf.int32)

    def __call__(self, text: tf.Tensor) -> tf.Tensor:
        codes = tf.strings.unicode_decode(text, "UTF-8")
        chars = tf.strings.unicode_encode(codes.values[:, None], "UTF-8")
        out = self._chars.lookup(chars)
        out = tf.where(tf.equal(out, _NOT_FOUND), chars, out)
        flat = codes.values
        kind = tf.gather(self._classes, tf.searchsorted(self._starts, flat, side="right") - 1)
        # Only a CR, a Hangul jamo or syllable, or a mark can join a cluster: most texts
        # have none, and skip the rest.
        out = tf.cond(
            tf.reduce_any((kind >= EXTEND) | tf.equal(kind, CR)),
            lambda: self._replace_short_clusters(codes, kind, chars, out),
            lambda: out,
        )
        return tf.strings.reduce_join(codes.with_flat_values(out), axis=-1)

    def _replace_short_clusters(self, codes, kind, chars, out):
        flat = codes.values
        rows = codes.value_rowids()
        starts = tf.concat([[True], rows[1:] != rows[:-1]], 0) | ~_joined(
            tf.concat([[CONTROL], kind[:-1]], 0), kind
        )
        cluster = tf.cumsum(tf.cast(starts, tf.int32)) - 1
        count = tf.reduce_sum(tf.cast(starts, tf.int32))
        size = tf.math.unsorted_segment_sum(_utf8_length(flat), cluster, count)
        width = tf.math.unsorted_segment_sum(tf.ones_like(cluster), cluster, count)
        short = tf.gather((width > 1) & (size < _SHORT), cluster)
        at = tf.where(short)[:, 0]  # code points of short clusters, usually none
        local, members = tf.unique(tf.gather(cluster, at))
        position = tf.cast(at, tf.int32) - tf.gather(
            tf.math.unsorted_segment_min(tf.cast(at, tf.int32), members, tf.size(local)),
            members,
        )
        member_chars = tf.gather(chars, at)
        value = tf.fill([tf.size(local)], _NOT_FOUND)
        for length in range(_SHORT - 1, 0, -1):  # the shortest found wins: it goes last
            prefix = tf.strings.unsorted_segment_join(
                tf.where(position < length, member_chars, ""), members, tf.size(local)
            )
            found = self._keys.lookup(prefix)
            value = tf.where(tf.equal(found, _NOT_FOUND), value, found)
        replaced = tf.gather(tf.not_equal(value, _NOT_FOUND), members)
        new = tf.where(position == 0, tf.gather(value, members), "")
        keep = tf.where(replaced)
        return tf.tensor_scatter_nd_update(out, tf.gather(at, keep), tf.gather_nd(new, keep))


def _joined(before: tf.Tensor, after: tf.Tensor) -> tf.Tensor:
    """Whether no cluster boundary falls between two code points of these classes."""

    def among(kind, *classes):
        return tf.reduce_any(tf.equal(kind[:, None], tf.constant(classes)[None, :]), axis=1)

    controls = (CR, LF, CONTROL)
    hangul = (
        (tf.equal(before, L) & among(after, L, V, LV, LVT))
        | (among(before, LV, V) & among(after, V, T))
        | (among(before, LVT, T) & tf.equal(after, T))
    )
    free = ~among(before, *controls) & ~among(after, *controls)
    glued = among(after, EXTEND, ZWJ, SPACING_MARK) | tf.equal(before, PREPEND) | hangul
    return (tf.equal(before, CR) & tf.equal(after, LF)) | (free & glued)


def _utf8_length(codes: tf.Tensor) -> tf.Tensor:
    return 1 + tf.add_n([tf.cast(codes >= limit, tf.int32) for limit in (0x80, 0x800, 0x10000)])
