"""Reading a BERT WordPiece tokenizer's tables off a Hugging Face fast tokenizer.

The tables are read character by character from the tokenizer's own normalizer and
pre-tokenizer, so the graph tokenizer built from them agrees with it exactly.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import logging
import sys
from pathlib import Path

from tf_finetune.errors import ExportError, short_reason

logger = logging.getLogger(__name__)

_SURROGATES = range(0xD800, 0xE000)


class UnsupportedTokenizer(ExportError):
    """The tokenizer cannot be expressed in the graph; the export keeps token ids only."""


@dataclasses.dataclass
class Template:
    """Where the post-processor puts special tokens around one text, or a pair.

    Each part is a list of (token id, token type id). A text's own tokens get
    `a_type` (`b_type` for the pair's second text).
    """

    single: tuple[list[tuple[int, int]], list[tuple[int, int]]]  # before A, after A
    pair: tuple[list, list, list]  # before A, between A and B, after B
    a_type: int
    b_type: int

    def specials(self, pair: bool) -> int:
        """The special tokens added to one text (`pair=False`) or a pair."""
        return sum(len(part) for part in (self.pair if pair else self.single))


@dataclasses.dataclass
class WordPieceTables:
    """Everything the graph tokenizer needs, read off a Hugging Face fast tokenizer."""

    vocab: list[str]
    deleted: list[tuple[int, int]]
    spaced: list[tuple[int, int]]
    whitespace: list[tuple[int, int]]
    mapped: dict[str, str]
    punctuation: list[tuple[int, int]]
    unk_id: int
    template: Template
    pad_id: int
    prefix: str
    max_chars_per_word: int


def read_tables(tokenizer) -> WordPieceTables:
    """Reads the WordPiece tables of a BERT-style fast tokenizer.

    Raises:
        UnsupportedTokenizer: The tokenizer is not BERT-style WordPiece (byte-level BPE,
            SentencePiece, ...), or adds tokens the graph tokenizer does not reproduce.
    """
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model, normalizer = spec.get("model") or {}, spec.get("normalizer") or {}
    pre = spec.get("pre_tokenizer") or {}
    kind = type(tokenizer).__name__
    if model.get("type") != "WordPiece":
        raise UnsupportedTokenizer(
            f"{kind} uses a {model.get('type', 'unknown')} model; WordPiece (BERT, "
            "DistilBERT, MiniLM, ELECTRA, MPNet, ...), byte-level BPE (RoBERTa, ...) and "
            "SentencePiece Unigram (ALBERT, XLM-RoBERTa, ...) can tokenize in the graph."
        )
    if normalizer.get("type") != "BertNormalizer" or pre.get("type") != "BertPreTokenizer":
        raise UnsupportedTokenizer(
            f"{kind} normalizes or pre-tokenizes unlike BERT "
            f"({normalizer.get('type')}, {pre.get('type')}); it cannot tokenize in the graph."
        )
    if not normalizer.get("clean_text", True):
        raise UnsupportedTokenizer(f"{kind} does not clean text; not supported in the graph.")
    added = unmatched_added_tokens(spec)
    if added:
        raise UnsupportedTokenizer(
            f"{kind} has {added}; the graph tokenizer does not match added tokens in text."
        )
    template = read_template(tokenizer)
    vocab = [token for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])]
    if len(vocab) != max(tokenizer.get_vocab().values()) + 1:
        raise UnsupportedTokenizer(f"{kind} has gaps in its vocabulary ids.")
    backend = tokenizer.backend_tokenizer
    classes = _normalization_classes(normalized_alone(backend.normalizer, normalizer))
    return WordPieceTables(
        vocab=vocab,
        punctuation=_punctuation_ranges(backend.pre_tokenizer, pre),
        unk_id=tokenizer.unk_token_id,
        template=template,
        pad_id=tokenizer.pad_token_id,
        prefix=model.get("continuing_subword_prefix", "##"),
        max_chars_per_word=model.get("max_input_chars_per_word", 100),
        **classes,
    )


def unmatched_added_tokens(spec: dict) -> str | None:
    """Names the added tokens that are not special, which no graph tokenizer matches in text."""
    added = [t["content"] for t in spec.get("added_tokens", []) if not t.get("special")]
    return f"added tokens that are not special ({', '.join(added[:5])})" if added else None


def read_template(tokenizer) -> Template:
    """Reads the special tokens the fast tokenizer's post-processor adds, and their types.

    They are read off what it does to one text and to a pair (BERT's `[CLS] A [SEP] B
    [SEP]`, MPNet's and RoBERTa's `<s> A </s></s> B </s>`, ...).

    Raises:
        UnsupportedTokenizer: The post-processor does more than put fixed special tokens
            around each text.
    """
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_padding()
    backend.no_truncation()
    single, (a_type,) = _parts(backend.encode("a"), 1, tokenizer)
    pair, (pair_a_type, b_type) = _parts(backend.encode("a", "b"), 2, tokenizer)
    if a_type != pair_a_type:
        raise UnsupportedTokenizer(
            f"{type(tokenizer).__name__} gives a text another token type in a pair; not "
            "supported in the graph."
        )
    return Template(single=tuple(single), pair=tuple(pair), a_type=a_type, b_type=b_type)


def _parts(encoding, texts: int, tokenizer) -> tuple[list[list[tuple[int, int]]], list[int]]:
    """Splits an encoding of `texts` texts into its special-token parts and their types."""
    refused = UnsupportedTokenizer(
        f"{type(tokenizer).__name__}'s post-processor does more than put special tokens "
        "around each text; not supported in the graph."
    )
    parts, types = [[]], []
    sequences = encoding.sequence_ids
    for index, (token, type_id) in enumerate(zip(encoding.ids, encoding.type_ids, strict=True)):
        sequence = sequences[index]
        if sequence is None:
            parts[-1].append((token, type_id))
        elif index == 0 or sequences[index - 1] != sequence:
            if sequence != len(types):  # texts out of order, or one text in two places
                raise refused
            types.append(type_id)
            parts.append([])
        elif type_id != types[-1]:
            raise refused
    if len(types) != texts:
        raise refused
    return parts, types


def _cached_by_settings(decode):
    """Caches `probe(component)` by the component's settings (its JSON spec).

    A probe runs the component over every code point, about a second each, and its
    answer depends on the settings and the tokenizers library alone. Answers are kept
    for the process and as JSON files under the cache folder (`cache_folder`), so a
    run after the first reads them in milliseconds; `decode` turns a kept answer back
    into the probe's. Callers get their own copy.
    """

    def decorator(probe):
        answers = {}

        @functools.wraps(probe)
        def cached(component, settings: dict):
            key = json.dumps(settings, sort_keys=True)
            if key not in answers:
                path = _answer_file(probe.__name__, key)
                kept = _read_answer(path)
                answers[key] = decode(kept) if kept is not None else probe(component)
                if kept is None and path is not None:
                    _keep_answer(path, answers[key])
            return copy.copy(answers[key])  # of immutable strings and tuples

        cached.answers = answers
        return cached

    return decorator


def cache_folder() -> Path | None:
    """Where probe answers are kept: beside the token cache; None when caching is off."""
    from tf_finetune.data import tokenization

    tokens = tokenization.cache_directory()
    return None if tokens is None else tokens.parent / "tokenizer_tables"


def _answer_file(probe: str, key: str) -> Path | None:
    import tokenizers

    folder = cache_folder()
    if folder is None:
        return None
    # The library's Unicode tables decide the answers as much as the settings do, and
    # a change to this module's probing as much as either.
    source = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    text = f"{probe}\n{tokenizers.__version__}\n{source}\n{key}"
    digest = hashlib.sha256(text.encode()).hexdigest()
    return folder / f"{probe.strip('_')}-{digest[:24]}.json"


def _read_answer(path: Path | None):
    if path is None:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet, or unreadable: probed again
        return None


def _keep_answer(path: Path, answer) -> None:
    from tf_finetune.runtime import atomic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(path, json.dumps(answer))
    except OSError as error:  # the answer is still right; it is only probed again
        logger.warning("Cannot keep tokenizer tables in %s (%s).", path, short_reason(error))


# Code points are probed this many at a time, in one string: a call per code point
# (1.1 million of them) took about 7 s per process.
_PROBE_BATCH = 8192
# Separates the code points of a probe string: the BERT normalizer leaves it as it is,
# and it neither composes nor changes case with its neighbours.
_SEPARATOR = "|"


@_cached_by_settings(decode=dict)
def normalized_alone(normalizer) -> dict[str, str]:
    """What the normalizer makes of each code point alone, for those it changes.

    The BERT normalizer works character by character (cleaning, spacing CJK, accents,
    case), so each code point between separators normalizes as it does alone. Where
    the separators do not come back one for one, that batch is probed code by code.
    """
    changed = {}
    codes = [code for code in _code_points() if chr(code) != _SEPARATOR]
    for start in range(0, len(codes), _PROBE_BATCH):
        chars = [chr(code) for code in codes[start : start + _PROBE_BATCH]]
        joined = _SEPARATOR + _SEPARATOR.join(chars) + _SEPARATOR
        outs = normalizer.normalize_str(joined).split(_SEPARATOR)[1:-1]
        if len(outs) != len(chars):
            outs = [normalizer.normalize_str(char) for char in chars]
        changed.update((char, out) for char, out in zip(chars, outs, strict=True) if out != char)
    if normalizer.normalize_str(_SEPARATOR) != _SEPARATOR:
        changed[_SEPARATOR] = normalizer.normalize_str(_SEPARATOR)
    return changed


def _normalization_classes(changed: dict[str, str]) -> dict:
    """Sorts the code points a BERT normalizer changes by what it does to them."""
    deleted, spaced, whitespace, mapped = [], [], [], {}
    for char, out in changed.items():
        code = ord(char)
        if out == "":
            deleted.append(code)
        elif out == f" {char} ":
            spaced.append(code)
        elif out == " ":
            whitespace.append(code)
        else:
            mapped[char] = out
    return {
        "deleted": _ranges(deleted),
        "spaced": _ranges(spaced),
        "whitespace": _ranges(whitespace),
        "mapped": mapped,
    }


@_cached_by_settings(decode=lambda ranges: [tuple(r) for r in ranges])
def _punctuation_ranges(pre_tokenizer) -> list[tuple[int, int]]:
    """Code points the pre-tokenizer splits off as tokens of their own.

    Each code point is probed between two "a"s: it is split off when it comes back as a
    piece of its own. The probes of a batch go in one string, "a?aa?a...": letters run
    together into one piece, so only split-off characters and whitespace cut it, and
    each piece is told to its probe by its offsets.
    """
    punctuation = []
    codes = list(_code_points())
    for start in range(0, len(codes), _PROBE_BATCH):
        batch = codes[start : start + _PROBE_BATCH]
        text = "".join(f"a{chr(code)}a" for code in batch)
        alone = {
            begin for _, (begin, end) in pre_tokenizer.pre_tokenize_str(text) if end == begin + 1
        }
        # Probe i spans characters 3i to 3i + 2; its code point is character 3i + 1.
        punctuation += [code for i, code in enumerate(batch) if 3 * i + 1 in alone]
    return _ranges(punctuation)


def _code_points():
    """Every Unicode code point a string can hold (surrogates cannot be encoded)."""
    return (code for code in range(sys.maxunicode + 1) if code not in _SURROGATES)


def _ranges(codes: list[int]) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for code in codes:
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1] = (ranges[-1][0], code)
        else:
            ranges.append((code, code))
    return ranges
