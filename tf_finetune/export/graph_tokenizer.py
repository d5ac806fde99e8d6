"""BERT WordPiece tokenization inside the TensorFlow graph, in core TensorFlow ops only.

An exported model tokenizes raw strings itself. Only core ops are used (regular
expressions, Unicode splitting, hash tables, a while loop), so the SavedModel runs
wherever TensorFlow does: `saved_model_cli run`, TensorFlow Serving, the C API, with no
custom-op library to register. tensorflow-text's tokenizers would need one.

The tables (`tokenizer_tables`) are read off the checkpoint's own Hugging Face fast
tokenizer, character by character, so normalization (cleaning, accent stripping,
lower-casing, spacing of CJK characters) and punctuation splitting agree with it exactly:

    text -> delete / space / whitespace classes (regex) -> per-character map (table)
         -> isolate punctuation (regex) -> split on spaces -> WordPiece (greedy longest
         match, table lookups) -> truncate (longest first) -> the post-processor's special
         tokens around each text ([CLS] a [SEP] b [SEP], <s> a </s></s> b </s>, ...)
"""

from __future__ import annotations

import tensorflow as tf

from tf_finetune.export.tokenizer_tables import Template, WordPieceTables


def _char_class(ranges: list[tuple[int, int]]) -> str:
    parts = [f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges]
    return "[" + "".join(parts) + "]"


class TemplatedTokenizer(tf.Module):
    """Model inputs from a family's token ids: truncation and the special tokens.

    A subclass's `token_ids(text)` gives each string's ids, `[batch, (tokens)]`; this
    truncates them (longest first for pairs) and puts the post-processor's special
    tokens around them, as the Hugging Face fast tokenizer does.

    Args:
        template: The special tokens, from `tokenizer_tables.read_template`.
        pad_id: The id padding fills with.
        max_length: Tokens per example after truncation, special tokens included.
        truncation: Which tokens of a longer text are kept (`data.long_text`).
    """

    def __init__(self, template: Template, pad_id: int, max_length: int, truncation: str):
        super().__init__()
        self._template = template
        self._pad_id = pad_id
        self.max_length = max_length
        self.truncation = truncation

    def token_ids(self, text: tf.Tensor) -> tf.RaggedTensor:
        raise NotImplementedError

    def __call__(self, text: tf.Tensor, text_pair: tf.Tensor | None = None) -> dict:
        """Returns int32 `[batch, tokens]` model inputs, padded to the longest example.

        As in Hugging Face, an empty `text_pair` string means "no pair" for its row.
        """
        ids, types, _ = self.ragged(text, text_pair)
        return self.pad(ids, types)

    def ragged(
        self, text: tf.Tensor, text_pair: tf.Tensor | None = None
    ) -> tuple[tf.RaggedTensor, tf.RaggedTensor, tf.Tensor]:
        """Returns each row's unpadded token ids and token type ids, `[batch, (tokens)]`,
        and whether it was cut to `max_length` (`[batch]`)."""
        first = self.token_ids(text)
        template, rows = self._template, tf.shape(text)[0]
        before, after = (_fixed(part, rows) for part in template.single)
        budget = self.max_length - template.specials(pair=False)
        kept = cut(first, budget, self.truncation)
        truncated = first.row_lengths() > budget
        ids = tf.concat([before[0], kept, after[0]], axis=1)
        types = tf.concat([before[1], _like(kept, template.a_type), after[1]], axis=1)
        if text_pair is not None:
            second = self.token_ids(text_pair)
            budget = self.max_length - template.specials(pair=True)
            keep_a, keep_b = _longest_first(first, second, budget)
            a, b = cut(first, keep_a, self.truncation), cut(second, keep_b, self.truncation)
            before, middle, after = (_fixed(part, rows) for part in template.pair)
            pair_ids = tf.concat([before[0], a, middle[0], b, after[0]], axis=1)
            pair_types = tf.concat(
                [before[1], _like(a, template.a_type), middle[1], _like(b, template.b_type),
                 after[1]],
                axis=1,
            )  # fmt: skip
            single = tf.equal(text_pair, "")
            ids = _rows_where(single, ids, pair_ids)
            types = _rows_where(single, types, pair_types)
            both = first.row_lengths() + second.row_lengths() > budget
            truncated = tf.where(single, truncated, both)
        return ids, types, truncated

    def windows(
        self, text: tf.Tensor, stride: int
    ) -> tuple[tf.RaggedTensor, tf.RaggedTensor, tf.Tensor, tf.Tensor]:
        """Splits each row's tokens into windows of `max_length`, as `long_text.windows`.

        Returns:
            The windows' token ids and token type ids, `[windows, (tokens)]`, each
            row's windows in order; whether each row had more than one window
            (`[batch]`); and each window's row (`[windows]`).
        """
        tokens = self.token_ids(text)
        template = self._template
        size = self.max_length - template.specials(pair=False)
        step = size - stride
        length = tf.cast(tokens.row_lengths(), tf.int32)
        count = tf.where(length <= size, 1, 1 + (length - size + step - 1) // step)
        rows = tf.repeat(tf.range(tf.shape(text)[0]), count)
        start = tf.ragged.range(count).flat_values * step
        stop = tf.minimum(start + size, tf.gather(length, rows))
        offset = tf.gather(tf.cast(tokens.row_starts(), tf.int32), rows)
        kept = tf.gather(tokens.values, tf.ragged.range(start + offset, stop + offset))
        before, after = (_fixed(part, tf.shape(rows)[0]) for part in template.single)
        ids = tf.concat([before[0], kept, after[0]], axis=1)
        types = tf.concat([before[1], _like(kept, template.a_type), after[1]], axis=1)
        return ids, types, count > 1, rows

    def pad(self, ids: tf.RaggedTensor, types: tf.RaggedTensor) -> dict:
        """Returns `ragged`'s output as model inputs padded to the longest row."""
        return {
            "input_ids": ids.to_tensor(self._pad_id),
            "attention_mask": tf.ones_like(ids).to_tensor(0),
            "token_type_ids": types.to_tensor(0),
        }


class GraphTokenizer(TemplatedTokenizer):
    """Tokenizes batches of strings as a BERT-style WordPiece fast tokenizer does.

    Args:
        tables: From `read_tables`.
        max_length: Tokens per example after truncation, special tokens included.
        truncation: Which tokens of a longer text are kept (`data.long_text`).
    """

    def __init__(self, tables: WordPieceTables, max_length: int, truncation: str = "head"):
        super().__init__(tables.template, tables.pad_id, max_length, truncation)
        self._tables = tables
        self._deleted = _char_class(tables.deleted) if tables.deleted else None
        self._spaced = _char_class(tables.spaced) if tables.spaced else None
        self._whitespace = _char_class(tables.whitespace) if tables.whitespace else None
        self._punctuation = _char_class(tables.punctuation)
        self._char_map = character_table(tables.mapped)
        self._vocab = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tables.vocab, tf.range(len(tables.vocab), dtype=tf.int32)
            ),
            default_value=-1,
        )

    def token_ids(self, text: tf.Tensor) -> tf.RaggedTensor:
        return self.wordpiece_ids(text)

    def normalize(self, text: tf.Tensor) -> tf.Tensor:
        """Applies the checkpoint's normalizer to a batch of strings."""
        if self._deleted:
            text = tf.strings.regex_replace(text, self._deleted, "")
        if self._spaced:
            text = tf.strings.regex_replace(text, self._spaced, r" \0 ")
        if self._whitespace:
            text = tf.strings.regex_replace(text, self._whitespace, " ")
        return map_characters(self._char_map, text)

    def words(self, text: tf.Tensor) -> tf.RaggedTensor:
        """Normalizes and pre-tokenizes a batch of strings into words `[batch, (words)]`."""
        text = tf.strings.regex_replace(self.normalize(text), self._punctuation, r" \0 ")
        words = tf.strings.split(text, sep=" ")
        return keep_where(words, tf.strings.length(words) > 0)

    def wordpiece_ids(self, text: tf.Tensor) -> tf.RaggedTensor:
        """Tokenizes a batch of strings into WordPiece ids `[batch, (tokens)]`."""
        words = self.words(text)
        return words.with_flat_values(self._wordpiece(words.flat_values)).merge_dims(1, 2)

    def _wordpiece(self, words: tf.Tensor) -> tf.RaggedTensor:
        """Greedy longest-match-first WordPiece over a flat batch of words."""
        tables = self._tables
        codes, starts = tf.strings.unicode_decode_with_offsets(words, "UTF-8")
        lengths = tf.cast(codes.row_lengths(), tf.int32)
        byte_length = tf.strings.length(words)
        # bounds[w, i]: byte offset of character i of word w; bounds[w, length] = end.
        bounds = tf.concat([tf.cast(starts, tf.int32), tf.expand_dims(byte_length, 1)], 1)
        bounds = bounds.to_tensor(default_value=-1)
        width = tf.maximum(tf.shape(bounds)[1] - 1, 0)
        count = tf.shape(words)[0]
        too_long = lengths > tables.max_chars_per_word
        ends = tf.range(1, width + 1)
        repeated = tf.tile(words[:, None], [1, width])

        def step(position, failed, done, pieces):
            start = tf.gather(bounds, position, batch_dims=1)
            stop = bounds[:, 1:]
            valid = (ends[None, :] > position[:, None]) & (ends[None, :] <= lengths[:, None])
            size = tf.where(valid, stop - start[:, None], 0)
            piece = tf.strings.substr(
                repeated, tf.broadcast_to(start[:, None], tf.shape(size)), size
            )
            piece = tf.where((position > 0)[:, None], tables.prefix + piece, piece)
            ids = tf.where(valid, self._vocab.lookup(piece), -1)
            # The longest match is the last valid end with a vocabulary hit.
            hit = ids >= 0
            best = (
                width
                - 1
                - tf.argmax(tf.reverse(tf.cast(hit, tf.int32), [1]), axis=1, output_type=tf.int32)
            )
            found = tf.reduce_any(hit, axis=1)
            active = ~done
            token = tf.gather(ids, best, batch_dims=1)
            pieces = pieces.write(pieces.size(), tf.where(active & found, token, -1))
            failed = failed | (active & ~found)
            position = tf.where(active & found, best + 1, position)
            done = done | failed | (position >= lengths)
            return position, failed, done, pieces

        position = tf.zeros([count], tf.int32)
        done = too_long | (lengths == 0)
        # A first row of -1 (no piece) keeps the stack well-shaped when no word loops.
        pieces = tf.TensorArray(tf.int32, size=0, dynamic_size=True).write(0, tf.fill([count], -1))
        _, failed, _, pieces = tf.while_loop(
            lambda position, failed, done, pieces: tf.reduce_any(~done),
            step,
            (position, too_long, done, pieces),
            maximum_iterations=tables.max_chars_per_word,
        )
        steps = tf.transpose(pieces.stack())  # [words, 1 + steps]
        # A word that is too long or has no match is a single [UNK], as in Hugging Face.
        unknown = tf.where(tf.range(tf.shape(steps)[1]) == 0, tables.unk_id, -1)
        steps = tf.where(failed[:, None], unknown[None, :], steps)
        return keep_where(steps, steps >= 0)


def keep_where(values, mask: tf.Tensor) -> tf.RaggedTensor:
    """The items of each row where `mask` holds, `[rows, (items)]`.

    `values` is a 2-D tensor or ragged tensor and `mask` has its shape. This is
    `tf.ragged.boolean_mask` in a few ops: at one text a call, those ops' overhead is
    much of a tokenizer's time.
    """
    if isinstance(values, tf.RaggedTensor):
        lengths = tf.math.unsorted_segment_sum(
            tf.cast(mask.values, tf.int64), values.value_rowids(), values.nrows()
        )
        values, mask = values.values, mask.values
    else:
        lengths = tf.reduce_sum(tf.cast(mask, tf.int64), axis=1)
    return tf.RaggedTensor.from_row_lengths(tf.boolean_mask(values, mask), lengths, validate=False)


def character_table(mapped: dict[str, str]) -> tf.lookup.StaticHashTable:
    """A table of what each character becomes; "\\x00" for a character left as it is."""
    keys = list(mapped) or ["\x00"]
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(keys, [mapped.get(k, "") for k in keys]),
        default_value="\x00",
    )


def map_characters(table: tf.lookup.StaticHashTable, text: tf.Tensor) -> tf.Tensor:
    """Replaces each character of a batch of strings by what `table` maps it to."""
    chars = tf.strings.unicode_split(text, "UTF-8")
    mapped = table.lookup(chars.flat_values)
    flat = tf.where(tf.equal(mapped, "\x00"), chars.flat_values, mapped)
    return tf.strings.reduce_join(chars.with_flat_values(flat), axis=-1)


def _fixed(part: list[tuple[int, int]], rows: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The ids and types of a template's special tokens, `[rows, len(part)]` each."""
    ids = tf.constant([[token for token, _ in part]], tf.int32, shape=[1, len(part)])
    types = tf.constant([[kind for _, kind in part]], tf.int32, shape=[1, len(part)])
    return tf.tile(ids, [rows, 1]), tf.tile(types, [rows, 1])


def _like(ragged: tf.RaggedTensor, value: int) -> tf.RaggedTensor:
    return tf.ones_like(ragged) * value


def _rows_where(condition, if_true: tf.RaggedTensor, if_false: tf.RaggedTensor):
    """Row `i` of `if_true` where `condition[i]`, else row `i` of `if_false`."""
    rows = tf.range(tf.shape(condition, out_type=tf.int64)[0])
    pick = tf.where(condition, rows, rows + tf.shape(condition, out_type=tf.int64)[0])
    return tf.gather(tf.concat([if_true, if_false], axis=0), pick)


def _longest_first(first, second, budget):
    """How many tokens of each row's pair Hugging Face's longest-first truncation keeps."""
    a = tf.cast(first.row_lengths(), tf.int32)
    b = tf.cast(second.row_lengths(), tf.int32)
    fits = a + b <= budget
    half = budget // 2
    keep_b = tf.where(a > b, tf.minimum(b, half), budget - tf.minimum(a, half))
    keep_a = budget - keep_b
    return tf.where(fits, a, keep_a), tf.where(fits, b, keep_b)


def cut(ragged: tf.RaggedTensor, keep, truncation: str) -> tf.RaggedTensor:
    """Keeps at most `keep` tokens of each row, as `data.long_text` keeps them.

    `keep` is one count for every row, or a count per row `[rows]`.
    """
    if truncation == "head" and isinstance(keep, int):
        return ragged[:, :keep]  # a slice: fewer ops for a served batch of one
    length = tf.cast(ragged.row_lengths(), tf.int32)
    positions = tf.ragged.range(length)
    keep = tf.convert_to_tensor(keep, tf.int32)
    keep = keep[:, None] if keep.shape.rank == 1 else keep
    if truncation == "head":
        return keep_where(ragged, positions < keep)
    if truncation == "tail":
        return keep_where(ragged, positions >= length[:, None] - keep)
    head = keep // 4  # long_text.head_tokens
    return keep_where(ragged, (positions < head) | (positions >= length[:, None] - (keep - head)))
