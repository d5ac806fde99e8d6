"""Texts longer than `max_length`: which of their tokens are kept, or how they are split.

Three truncation strategies, for training, the report and the export alike (the
export's in-graph tokenizers cut the same way, `graph_tokenizer.cut`):

- `head`: the first tokens (Hugging Face's default, `truncation_side="right"`);
- `tail`: the last tokens (`truncation_side="left"`);
- `head_tail`: the first quarter of the budget from the head and the rest from the
  tail. Sun et al. 2019 ("How to Fine-Tune BERT for Text Classification?") kept the
  first 128 and last 382 of 510 tokens, and found it best on long IMDb reviews.

A pair of texts shares its budget as Hugging Face's `longest_first` shares it; each
text is then cut by the strategy.

Or sliding windows (`long_text: windows`): a longer text becomes overlapping windows
of `max_length` tokens, each with the special tokens, placed as Hugging Face places
its overflowing tokens (`stride` tokens shared by neighbours, the last window ending
at the text's end). Each window trains as an example with its text's label; a text's
prediction is the mean of its windows' probabilities (`graph_tokenizer.windows` in the
export).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tf_finetune.config import TRUNCATION_CHOICES
from tf_finetune.errors import ConfigError

TRUNCATIONS = tuple(c for c in TRUNCATION_CHOICES if c != "auto")
# How the side of a cut was written before `truncation` existed (in the token cache key).
_SIDES = {"head": "right", "tail": "left"}


@dataclasses.dataclass(frozen=True)
class Cutting:
    """What becomes of a split's longer texts.

    Attributes:
        truncation: The strategy that cuts them (one of `TRUNCATIONS`).
        stride: With windows, the tokens neighbouring windows share; None cuts.
    """

    truncation: str
    stride: int | None = None

    def key(self) -> list:
        """How it is named in a token cache digest (a cut as it was named before windows)."""
        return [cache_key(self.truncation), *([] if self.stride is None else [self.stride])]


def resolve_truncation(setting: str, tokenizer) -> str:
    """The strategy `setting` names; "auto" follows the tokenizer's `truncation_side`."""
    if setting == "auto":
        return "tail" if tokenizer.truncation_side == "left" else "head"
    if setting not in TRUNCATIONS:
        raise ConfigError(
            f"Config key 'truncation' must be one of {', '.join(TRUNCATION_CHOICES)}. "
            f"Received: {setting!r}."
        )
    return setting


def cache_key(strategy: str) -> str:
    """How the strategy is named in a token cache digest (head and tail as they were)."""
    return _SIDES.get(strategy, strategy)


def head_tokens(keep: int) -> int:
    """Tokens `head_tail` takes from the head when `keep` are kept: a quarter."""
    return keep // 4


def longest_first(first: int, second: int, budget: int) -> tuple[int, int]:
    """How many tokens of each text of a pair Hugging Face's `longest_first` keeps."""
    if first + second <= budget:
        return first, second
    half = budget // 2
    keep_second = min(second, half) if first > second else budget - min(first, half)
    return budget - keep_second, keep_second


def kept_positions(length: int, keep: int, strategy: str) -> np.ndarray:
    """The positions of a text's `length` tokens that `strategy` keeps, at most `keep`."""
    positions = np.arange(length)
    if length <= keep:
        return positions
    if strategy == "head":
        return positions[:keep]
    if strategy == "tail":
        return positions[length - keep :]
    head = head_tokens(keep)
    return np.concatenate([positions[:head], positions[length - (keep - head) :]])


def window_spans(length: int, size: int, stride: int) -> list[tuple[int, int]]:
    """The `[start, stop)` token spans of a text's windows of `size` tokens.

    Each starts `size - stride` tokens after the one before; the last reaches the end.
    """
    if length <= size:
        return [(0, length)]
    step = size - stride
    count = 1 + -(-(length - size) // step)
    return [(i * step, min(i * step + size, length)) for i in range(count)]


def default_stride(size: int) -> int:
    """Tokens neighbouring windows share when `stride` is "auto": a quarter of a window."""
    return size // 4


def windows(encoding, max_length: int, stride: int) -> list[tuple[list[int], list[int]]]:
    """Splits an untruncated encoding of one text into windows of `max_length` tokens.

    Returns:
        Each window's token ids and token type ids, special tokens included.
    """
    sequence = np.array([-1 if s is None else s for s in encoding.sequence_ids])
    specials, text = np.flatnonzero(sequence < 0), np.flatnonzero(sequence == 0)
    ids, types = encoding.ids, encoding.type_ids
    out = []
    for start, stop in window_spans(len(text), max_length - len(specials), stride):
        keep = np.sort(np.concatenate([specials, text[start:stop]]))
        out.append(([ids[i] for i in keep], [types[i] for i in keep]))
    return out


def cut(encoding, max_length: int, strategy: str) -> tuple[list[int], list[int]]:
    """Cuts an untruncated encoding (special tokens included) to `max_length` tokens.

    The special tokens stay; the text tokens the strategy keeps are kept in order.

    Returns:
        The token ids and token type ids.
    """
    sequence = np.array([-1 if s is None else s for s in encoding.sequence_ids])
    texts = [np.flatnonzero(sequence == s) for s in (0, 1) if (sequence == s).any()]
    budget = max_length - int(np.count_nonzero(sequence < 0))
    if len(texts) == 1:
        counts = [min(len(texts[0]), budget)]
    else:
        counts = longest_first(len(texts[0]), len(texts[1]), budget)
    keep = np.flatnonzero(sequence < 0).tolist()
    for positions, count in zip(texts, counts, strict=True):
        keep += positions[kept_positions(len(positions), count, strategy)].tolist()
    keep.sort()
    ids, types = encoding.ids, encoding.type_ids
    return [ids[i] for i in keep], [types[i] for i in keep]
