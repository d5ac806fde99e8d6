"""Tokenizing the canonical splits with the checkpoint's fast tokenizer."""

from __future__ import annotations

import dataclasses
import logging

import datasets
import numpy as np

from tf_finetune.errors import ModelError, first_line

logger = logging.getLogger(__name__)

# Tokenizers without a real limit report a huge sentinel as model_max_length.
_NO_LIMIT = 1_000_000
_FALLBACK_LIMIT = 512
_TEXT_COLUMNS = ("text", "text_pair")


@dataclasses.dataclass
class TokenizedData:
    """Tokenized splits and how they were made.

    Attributes:
        splits: The splits with the tokenizer's model inputs and `labels`.
        input_names: The model input columns, in the tokenizer's order.
        max_length: Tokens per example after truncation.
        longest_train: Tokens in the longest training example, before truncation to
            `max_length` (capped at the model's limit).
        truncated_train: Training examples cut to `max_length`.
    """

    splits: datasets.DatasetDict
    input_names: list[str]
    max_length: int
    longest_train: int
    truncated_train: int


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
) -> TokenizedData:
    """Tokenizes every split with truncation, through `Dataset.map(batched=True)`.

    Args:
        splits: Canonical splits (`text`, optional `text_pair`, `labels`).
        tokenizer: A fast tokenizer.
        max_length: A token count, or "auto" for the longest training example.
        padding: "max_length" pads every example to `max_length`; "dynamic" leaves
            padding to the batch collator.
        limit: The model's length limit; `max_length` never exceeds it.
    """
    train_lengths = _lengths(splits["train"], tokenizer, limit)
    longest = min(int(train_lengths.max()), limit)
    if max_length == "auto":
        max_length = longest
    elif max_length > limit:
        logger.warning("max_length %d exceeds the model's limit; using %d.", max_length, limit)
        max_length = limit
    truncated = int((train_lengths > max_length).sum())
    if truncated:
        logger.warning(
            "%d training examples are longer than %d tokens and are truncated.",
            truncated,
            max_length,
        )

    has_pair = "text_pair" in splits["train"].column_names
    pad = "max_length" if padding == "max_length" else False

    def encode(batch):
        pair = batch["text_pair"] if has_pair else None
        return tokenizer(batch["text"], pair, truncation=True, max_length=max_length, padding=pad)

    drop = [c for c in _TEXT_COLUMNS if c in splits["train"].column_names]
    tokenized = splits.map(
        encode, batched=True, remove_columns=drop, desc="Tokenizing", load_from_cache_file=False
    )
    input_names = [n for n in tokenizer.model_input_names if n in tokenized["train"].column_names]
    logger.info(
        "Tokenized with max_length %d (longest training example: %d tokens).", max_length, longest
    )
    return TokenizedData(
        splits=tokenized,
        input_names=input_names,
        max_length=int(max_length),
        longest_train=longest,
        truncated_train=truncated,
    )


def _lengths(split: datasets.Dataset, tokenizer, limit: int) -> np.ndarray:
    """Returns token counts of a split; anything over `limit` counts as `limit + 1`."""
    pair = split["text_pair"][:] if "text_pair" in split.column_names else None
    encoded = tokenizer(
        split["text"][:],
        pair,
        truncation=True,
        max_length=limit + 1,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    return np.array([len(ids) for ids in encoded["input_ids"]])
