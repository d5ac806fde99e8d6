"""Tokenizing the canonical splits with the checkpoint's fast tokenizer."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import typing
from pathlib import Path

import datasets
import numpy as np
import pyarrow

from tf_finetune.data import long_text
from tf_finetune.errors import ConfigError, ModelError, first_line, short_reason

logger = logging.getLogger(__name__)

# Tokenizers without a real limit report a huge sentinel as model_max_length.
_NO_LIMIT = 1_000_000
_FALLBACK_LIMIT = 512
_TEXT_COLUMNS = ("text", "text_pair")
_CACHE_FORMAT = "tf_finetune tokens 1"  # change it when what a cached split holds changes


@dataclasses.dataclass
class TokenizedData:
    """Tokenized splits and how they were made.

    Attributes:
        splits: The splits with `labels` and the model inputs the tokenizer makes:
            `input_ids` (int32) and `token_type_ids` (int8) where the model takes them,
            unpadded; the attention mask is left to the batches, which know each
            example's length. With `padding="max_length"` every input is padded to
            `max_length` and `attention_mask` is stored too (the tutorial's recipe).
        input_names: The model input columns, in the tokenizer's order.
        max_length: Tokens per example after truncation.
        longest_train: Tokens in the longest training example, before truncation to
            `max_length` (capped at the model's limit).
        truncated: Texts longer than `max_length` (cut, or split into windows), by split.
        truncation: The strategy that cut them (`long_text`).
        stride: With windows, the tokens neighbouring windows share; None when texts
            were cut. The splits' rows are then windows, with `document` (the index
            of the window's text in the split) and `window` columns.
        cached: Splits read from the token cache rather than tokenized now.
        digests: Each split's digest of everything its tokens depend on (its texts and
            labels, the tokenizer, the length cut): what names it in the token cache,
            and what a resumed run must find unchanged.
    """

    splits: datasets.DatasetDict
    input_names: list[str]
    max_length: int
    longest_train: int
    truncated: dict[str, int]
    truncation: str
    stride: int | None = None
    cached: int = 0
    digests: dict[str, str] = dataclasses.field(default_factory=dict)


def load_tokenizer(model_path: str):
    """Loads the checkpoint's fast tokenizer.

    Raises:
        ModelError: The checkpoint has no usable fast tokenizer.
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            model_path, use_fast=True, trust_remote_code=False
        )
    except (OSError, ValueError, TypeError) as error:  # TypeError: no vocabulary file
        raise ModelError(
            f"Cannot load a tokenizer from {model_path!r}: {first_line(error)}. "
            "The checkpoint needs tokenizer files (tokenizer.json or vocab.txt)."
        ) from None
    if not tokenizer.is_fast:
        raise ModelError(
            f"{model_path!r} has no fast tokenizer. Add a tokenizer.json "
            "(tokenizer.save_pretrained from a recent transformers writes one)."
        )
    return tokenizer


def cache_directory() -> Path | None:
    """Where tokenized splits are kept between runs; None when caching is off.

    `$TF_FINETUNE_CACHE/tokens`, else `$XDG_CACHE_HOME/tf_finetune/tokens` (by default
    `~/.cache/tf_finetune/tokens`). `TF_FINETUNE_CACHE=off` turns it off. Each file is
    one split tokenized one way; deleting the folder is always safe.
    """
    root = os.environ.get("TF_FINETUNE_CACHE")
    if root == "off":
        return None
    if root is None:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        root = Path(base) / "tf_finetune"
    return Path(root) / "tokens"


def length_limit(tokenizer, model_config) -> int:
    """Returns the most tokens the model accepts: the tokenizer's or the model's limit."""
    limit = tokenizer.model_max_length
    if limit is None or limit >= _NO_LIMIT:
        limit = getattr(model_config, "max_position_embeddings", None) or _FALLBACK_LIMIT
    return int(limit)


def tokenize(
    splits: datasets.DatasetDict,
    tokenizer,
    max_length: int | str,
    padding: str,
    limit: int,
    cache_dir: Path | None = None,
    truncation: str = "auto",
    windows: bool = False,
    stride: int | str = "auto",
    max_windows: int | None = None,
) -> TokenizedData:
    """Tokenizes every split once, in batches on every core, with truncation or windows.

    One pass gives the token ids and which examples were cut: it truncates one token
    past the longest allowed, so an example that reaches that length was longer, and
    re-tokenizes those few at the allowed length. `max_length="auto"` is then the
    longest training example, and the other splits' longer examples are cut to it too:
    the report scores what the export will see.

    Args:
        splits: Canonical splits (`text`, optional `text_pair`, `labels`).
        tokenizer: A fast tokenizer (it encodes each batch on all cores).
        max_length: A token count, or "auto" for the longest training example.
        padding: "max_length" pads every example to `max_length`; otherwise padding is
            left to the batches.
        limit: The model's length limit; `max_length` never exceeds it.
        cache_dir: Where tokenized splits are kept, named by a digest of everything
            that decides them (the split's texts and labels, the tokenizer, the length
            cut). A rerun, a resume or another run of a comparison reads them back
            instead of tokenizing. None tokenizes in memory.
        truncation: Which tokens of a longer text are kept: a strategy of `long_text`,
            or "auto" (the tokenizer's `truncation_side`).
        windows: Split a longer text into windows instead (`long_text.windows`): a
            split's rows are then windows, with `document` and `window` columns.
        stride: With windows, the tokens neighbouring windows share, or "auto".
        max_windows: With windows, the training split keeps each text's first this many.

    Raises:
        ConfigError: Windows of text pairs, or a stride as long as a window.
    """
    if max_length != "auto" and max_length > limit:
        logger.warning("max_length %d exceeds the model's limit; using %d.", max_length, limit)
        max_length = limit
    truncation = long_text.resolve_truncation(truncation, tokenizer)
    keep = limit if max_length == "auto" else max_length
    names = ["input_ids"]  # the stored columns; the attention mask is made per batch
    if "token_type_ids" in tokenizer.model_input_names:
        names.append("token_type_ids")
    encoded, digests, cached, longest = {}, {}, 0, keep
    # Train first: with "auto", its longest text decides where the other splits are cut.
    for name in sorted(splits, key=lambda n: n != "train"):
        split = splits[name]
        if windows and name != "train" and max_length == "auto":
            keep = longest
        cutting = _cutting(truncation, windows, stride, keep, tokenizer, split)
        digests[name] = _digest(split, tokenizer, keep, names, cutting)
        encoded[name], hit = _encode(
            split, tokenizer, keep, names, cutting, _cached_path(digests[name], cache_dir)
        )
        cached += hit
        if name == "train":
            train = encoded["train"]
            longest = keep if _count(train) else int(row_lengths(train).max(initial=0))
    encoded = {name: encoded[name] for name in splits}  # the splits' own order
    if max_length == "auto":
        max_length = longest
        if not windows:
            for name, split in encoded.items():
                if name != "train":
                    encoded[name] = _cut_to(split, splits[name], tokenizer, max_length, truncation)
    truncated = {name: _count(split) for name, split in encoded.items()}
    # What the export does with a longer text: cut, or windows of max_length tokens.
    cutting = _cutting(truncation, windows, stride, max_length, tokenizer, splits["train"])
    if any(truncated.values()):
        logger.warning(
            "Texts longer than %d tokens, %s: %s.",
            max_length,
            f"split into windows (stride {cutting.stride})" if windows else f"cut ({truncation})",
            ", ".join(f"{truncated[n]} of {len(splits[n])} {n}" for n in encoded),
        )
    if windows and max_windows is not None:
        encoded["train"] = _first_windows(encoded["train"], max_windows)
    tokenized = datasets.DatasetDict(
        {name: split.remove_columns("truncated") for name, split in encoded.items()}
    )
    if padding == "max_length":
        tokenized = _pad(tokenized, tokenizer, max_length)
    input_names = [n for n in tokenizer.model_input_names if n in names or n == "attention_mask"]
    logger.info(
        "Tokenized with max_length %d (longest training example: %d tokens)%s.",
        max_length,
        longest,
        f"; {cached} of {len(splits)} splits read from the cache" if cached else "",
    )
    return TokenizedData(
        splits=tokenized,
        input_names=input_names,
        max_length=int(max_length),
        longest_train=longest,
        truncated=truncated,
        truncation=truncation,
        stride=cutting.stride,
        cached=cached,
        digests=digests,
    )


def _cutting(truncation, windows, stride, keep, tokenizer, split) -> long_text.Cutting:
    """The split's `long_text.Cutting`, its windows' stride resolved for `keep` tokens."""
    if not windows:
        return long_text.Cutting(truncation)
    if "text_pair" in split.column_names:
        raise ConfigError(
            "--long-text windows takes single texts, and this data has text pairs "
            "(text_pair_column). Use --long-text truncate for pairs."
        )
    size = keep - tokenizer.num_special_tokens_to_add(pair=False)
    if stride == "auto":
        stride = long_text.default_stride(size)
    if stride >= size:
        raise ConfigError(
            f"Config key 'stride' must be less than the text tokens of a window ({size}: "
            f"max_length {keep} less the special tokens). Received: {stride}."
        )
    return long_text.Cutting(truncation, stride)


def _first_windows(split: datasets.Dataset, count: int) -> datasets.Dataset:
    """The split's windows that are among their text's first `count`."""
    window = split.with_format("numpy")["window"][:]
    kept = np.flatnonzero(window < count)
    logger.info("Training on %d windows (the first %d of each text).", len(kept), count)
    return split.select(kept) if len(kept) < len(split) else split


def _count(split: datasets.Dataset) -> int:
    """Examples of a split that were cut."""
    return int(np.count_nonzero(split.with_format("numpy")["truncated"][:]))


def _cut_to(split, texts, tokenizer, max_length: int, truncation: str):
    """Cuts the examples of a tokenized split that are longer than `max_length`."""
    over = np.flatnonzero(row_lengths(split) > max_length)
    if not len(over):
        return split
    rows = texts.select(over)
    inputs = rows["text"][:]
    if "text_pair" in rows.column_names:
        inputs = list(zip(inputs, rows["text_pair"][:], strict=True))
    out, _ = _Backend(tokenizer, truncation).encode(inputs, max_length)
    again = dict(zip(over.tolist(), out, strict=True))

    def replace(batch, indices):
        for row, index in enumerate(indices):
            if index in again:
                batch["input_ids"][row] = again[index].ids
                if "token_type_ids" in batch:
                    batch["token_type_ids"][row] = again[index].type_ids
                batch["truncated"][row] = True
        return batch

    return split.map(replace, batched=True, with_indices=True, keep_in_memory=True, desc="Cutting")


def _encode(
    split, tokenizer, keep: int, names: list[str], cutting: long_text.Cutting, path: Path | None
):
    """Tokenizes one split to at most `keep` tokens; flags the examples that were longer.

    The result is written to `path` and read back from it when it is already there;
    None tokenizes in memory. With windows, a row is a window, and `document` and
    `window` say which text it comes from and which of its windows it is.

    Returns:
        The tokenized split, and whether it was read from the cache.
    """
    if path is not None and path.is_file():
        try:
            return datasets.Dataset.from_file(str(path)), True
        except (OSError, pyarrow.ArrowInvalid) as error:  # damaged: tokenize again
            logger.warning("Token cache file %s is unreadable (%s); replacing it.", path, error)

    has_pair = "text_pair" in split.column_names
    types = "token_type_ids" in names
    backend = _Backend(tokenizer, cutting.truncation)

    def encode(batch: pyarrow.Table, indices: list[int]) -> pyarrow.Table:
        texts = batch["text"].to_pylist()
        pairs = batch["text_pair"].to_pylist() if has_pair else None
        inputs = list(zip(texts, pairs, strict=True)) if has_pair else texts
        labels, where = batch["labels"], {}
        if cutting.stride is None:
            out, truncated = backend.encode(inputs, keep)
        else:
            out, truncated, local = backend.windows(inputs, keep, cutting.stride)
            labels = labels.take(pyarrow.array(local))
            where = {
                "document": np.asarray(indices, np.int64)[local],
                "window": (np.arange(len(local)) - np.searchsorted(local, local)).astype(np.int32),
            }
        columns = {"input_ids": pyarrow.array([e.ids for e in out], pyarrow.list_(pyarrow.int32()))}
        if types:
            columns["token_type_ids"] = pyarrow.array(
                [e.type_ids for e in out], pyarrow.list_(pyarrow.int8())
            )
        return pyarrow.table({"labels": labels, **columns, "truncated": truncated, **where})

    features = datasets.Features(
        {
            "labels": split.features["labels"],
            "input_ids": datasets.Sequence(datasets.Value("int32")),
            **({"token_type_ids": datasets.Sequence(datasets.Value("int8"))} if types else {}),
            "truncated": datasets.Value("bool"),
            **(
                {"document": datasets.Value("int64"), "window": datasets.Value("int32")}
                if cutting.stride is not None
                else {}
            ),
        }
    )
    # Windows change the number of rows: every input column goes.
    drop = split.column_names if cutting.stride is not None else _TEXT_COLUMNS

    def run(path):
        return (
            split.with_format("arrow")
            .map(
                encode,
                batched=True,
                with_indices=True,
                batch_size=1000,
                remove_columns=[c for c in drop if c in split.column_names],
                features=features,
                desc="Tokenizing",
                cache_file_name=str(path) if path else None,
                load_from_cache_file=False,
                keep_in_memory=path is None,
            )
            .with_format(None)
        )

    if path is None:
        return run(None), False
    try:
        return run(path), False
    except OSError as error:  # a full or read-only disk: the run goes on without the cache
        logger.warning("Cannot write the token cache in %s (%s).", path.parent, short_reason(error))
        return run(None), False


class _Backend:
    """The checkpoint's Rust tokenizer, called as `tokenizer(..., truncation=True)` calls it.

    Calling it directly skips the Python dictionaries the transformers wrapper makes of
    every encoding (a fifth of the time of a pass), and `encode_batch_fast` skips the
    character offsets, which training never reads (another fifth). It is a copy, so the
    tokenizer's own truncation and padding settings are left as they were.

    Args:
        tokenizer: The Hugging Face fast tokenizer.
        truncation: The strategy of `long_text` that cuts a longer text.
    """

    def __init__(self, tokenizer, truncation: str):
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        self._tokenizer.no_padding()
        self._truncation = truncation

    def windows(self, inputs: list[str], keep: int, stride: int):
        """Encodes texts, a longer text as windows of `keep` tokens (`long_text.windows`).

        Returns:
            The windows' encodings in text order, whether each is the first of a text
            that was split, and the index of each window's text in `inputs`.
        """
        # One token past `keep` tells the texts that fit (done) from those to split,
        # which are encoded whole: the truncation strategy plays no part in windows.
        out = self._encode(inputs, keep + 1)
        split = np.array([len(encoding.ids) > keep for encoding in out], bool)
        whole = iter(self._encode([text for text, cut in zip(inputs, split, strict=True) if cut]))
        rows, first, documents = [], [], []
        for index, (encoding, cut) in enumerate(zip(out, split, strict=True)):
            parts = [_Cut(*w) for w in long_text.windows(next(whole), keep, stride)] if cut else []
            rows += parts or [encoding]
            first += [cut] + [False] * (len(parts) - 1)
            documents += [index] * max(len(parts), 1)
        return rows, np.array(first, bool), np.array(documents, np.int64)

    def encode(self, inputs: list, keep: int) -> tuple[list, np.ndarray]:
        """Encodes texts (or pairs of texts) cut to `keep` tokens.

        One pass truncates one token past `keep`, so an input that reaches that length
        was longer; those few are encoded again and cut.

        Returns:
            Each input's encoding (its `ids` and `type_ids`), and which were cut.
        """
        out = self._encode(inputs, keep + 1)
        over = [i for i, encoding in enumerate(out) if len(encoding.ids) > keep]
        if over:
            longer = [inputs[i] for i in over]
            if self._truncation == "head_tail":
                again = [_Cut(*long_text.cut(e, keep, "head_tail")) for e in self._encode(longer)]
            else:
                again = self._encode(longer, keep)
            for row, encoding in zip(over, again, strict=True):
                out[row] = encoding
        truncated = np.zeros(len(inputs), bool)
        truncated[over] = True
        return out, truncated

    def _encode(self, inputs: list, max_length: int | None = None) -> list:
        """Encodes with Hugging Face's truncation to `max_length` (None: uncut)."""
        if max_length is None:
            self._tokenizer.no_truncation()
        else:
            side = "left" if self._truncation == "tail" else "right"
            self._tokenizer.enable_truncation(
                max_length, stride=0, strategy="longest_first", direction=side
            )
        return self._tokenizer.encode_batch_fast(inputs, add_special_tokens=True)


class _Cut(typing.NamedTuple):
    ids: list[int]
    type_ids: list[int]


def encode(tokenizer, inputs: list, max_length: int, truncation: str) -> list:
    """Each text's (or pair's) encoding (`ids`, `type_ids`), cut as training cuts it."""
    return _Backend(tokenizer, truncation).encode(inputs, max_length)[0]


def windows(tokenizer, texts: list[str], max_length: int, stride: int) -> list[list]:
    """Each text's windows' encodings (`ids`, `type_ids`), as training splits it."""
    rows, _, documents = _Backend(tokenizer, "head").windows(texts, max_length, stride)
    return [[rows[i] for i in np.flatnonzero(documents == t)] for t in range(len(texts))]


def _cached_path(digest: str, cache_dir: Path | None) -> Path | None:
    """The split's file in the token cache; None without a usable cache folder."""
    if cache_dir is None:
        return None
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        logger.warning("Cannot use %s as the token cache (%s).", cache_dir, short_reason(error))
        return None
    return cache_dir / f"{digest}.arrow"


def _digest(
    split: datasets.Dataset, tokenizer, keep: int, names: list[str], cutting: long_text.Cutting
) -> str:
    """A digest of everything a tokenized split depends on.

    The rows' texts and labels are hashed as values (each column's lengths and bytes),
    so the same rows digest the same however their Arrow data is chunked or sliced.
    """
    digest = hashlib.sha256()
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    for state in ("truncation", "padding"):  # the last call's settings, not the tokenizer's
        spec.pop(state, None)
    cut = [keep, *cutting.key()]
    digest.update(json.dumps([_CACHE_FORMAT, cut, names, spec], sort_keys=True).encode())
    columns = [c for c in (*_TEXT_COLUMNS, "labels") if c in split.column_names]
    parts = {column: (hashlib.sha256(), hashlib.sha256()) for column in columns}
    for table in split.select_columns(columns).with_format("arrow").iter(batch_size=65_536):
        for column in columns:
            sizes, values = parts[column]
            for chunk in table[column].chunks:
                if column == "labels" and pyarrow.types.is_list(chunk.type):  # multi-label
                    sizes.update(chunk.value_lengths().to_numpy().astype(np.int64).tobytes())
                    values.update(chunk.flatten().to_numpy().astype(np.int64).tobytes())
                    continue
                if column == "labels":
                    values.update(chunk.to_numpy().astype(np.int64).tobytes())
                    continue
                offsets = _string_offsets(chunk)
                sizes.update(np.diff(offsets).astype(np.int64).tobytes())
                values.update(memoryview(chunk.buffers()[2])[offsets[0] : offsets[-1]])
    for sizes, values in parts.values():
        digest.update(sizes.digest() + values.digest())
    return digest.hexdigest()[:32]


def _string_offsets(chunk: pyarrow.Array) -> np.ndarray:
    """The byte offsets of a string array's values, as its slice sees them."""
    width = np.int64 if pyarrow.types.is_large_string(chunk.type) else np.int32
    offsets = np.frombuffer(chunk.buffers()[1], width)
    return offsets[chunk.offset : chunk.offset + len(chunk) + 1]


def documents(split: datasets.Dataset) -> np.ndarray | None:
    """Each window's text (its index in the split) where the split's rows are windows."""
    if "document" not in split.column_names:
        return None
    return split.with_format("numpy")["document"][:]


def row_lengths(split: datasets.Dataset) -> np.ndarray:
    """Tokens of each example of a tokenized, unpadded split, read chunk by chunk from Arrow."""
    column = split.with_format("arrow")["input_ids"]
    lengths = [chunk.value_lengths().to_numpy() for chunk in column.chunks]
    return np.concatenate(lengths or [np.zeros(0)]).astype(np.int64)


def _pad(tokenized: datasets.DatasetDict, tokenizer, max_length: int) -> datasets.DatasetDict:
    """Pads every example to `max_length` and adds its attention mask (the tutorial's recipe)."""

    def pad(batch):
        return tokenizer.pad(dict(batch), padding="max_length", max_length=max_length)

    return tokenized.map(pad, batched=True, desc="Padding", keep_in_memory=True)
