"""Exporting a trained classifier as a TensorFlow Serving SavedModel.

The SavedModel holds a plain `tf.Module`, not the Keras model, and only core TensorFlow
ops, so loading it needs TensorFlow alone: no tf_finetune, transformers or
tensorflow-text. Signatures:

- `serving_default`: `text` (string `[batch]`; plus `text_pair` for pair models) ->
  `scores` (float32 `[batch, classes]`, softmax), `classes` (string `[batch, classes]`),
  `label` (string `[batch]`), `label_id` (int32 `[batch]`), `truncated` (bool
  `[batch]`: the text was longer than `max_length` tokens and was cut, as the module's
  `truncation` says). Tokenization runs in the graph (see `graph_tokenizer`). Where
  the tokenizer cannot, `serving_default` is the token-id function and the export
  says why.
- `token_ids`: exactly the model's inputs, in its tokenizer's names and order (`input_ids`,
  `attention_mask`, and `token_type_ids` where the model has them; int32 `[batch,
  tokens]`), so `tokenizer(texts, return_tensors="np")` is fed as it is -> `logits`,
  `probabilities` (float32 `[batch, classes]`).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import tensorflow as tf

from tf_finetune.errors import ExportError, short_reason
from tf_finetune.evaluation.multi_label import DEFAULT_THRESHOLD
from tf_finetune.export import graph_tokenizer, tokenizer_tables
from tf_finetune.modeling.forward import Forward
from tf_finetune.runtime import atomic

logger = logging.getLogger(__name__)

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
TOKEN_IDS_SIGNATURE = "token_ids"
# Raw-text rows are run through the model in chunks of this many rows of similar length.
SERVING_CHUNK = 16
# The last is longer than any max_length, so the check sees the truncation strategy.
_PROBE_TEXTS = [
    "a great film",
    "Dull, flat and far too long!",
    "",
    "Café noir … 😀 中文",
    " ".join(["a great film, then dull, flat and far too long!"] * 60) + " The end.",
]


@dataclasses.dataclass
class Export:
    """A written SavedModel version.

    Attributes:
        path: The version folder.
        raw_text: Whether `serving_default` takes raw text.
        reason: Why it does not, when it does not.
    """

    path: Path
    raw_text: bool
    reason: str | None = None


def export_saved_model(
    model,
    label_names: list[str],
    input_names: list[str],
    model_dir: Path,
    tokenizer=None,
    max_length: int | None = None,
    text_pair: bool = False,
    truncation: str = "head",
    stride: int | None = None,
    multi_label: bool = False,
    thresholds: list[float] | None = None,
    forward: Forward | None = None,
) -> Export:
    """Writes the next integer version of a SavedModel under `model_dir`.

    The version is written under a temporary name beside its final place, reloaded and
    checked against `model` (on token ids, and on raw text through `tokenizer`), and
    only then renamed, so a reader never sees a partial export and no existing version
    is overwritten.

    Args:
        model: The trained TF sequence classifier.
        label_names: Class names in id order, stored in the SavedModel as `label_names`.
        input_names: The inputs the model takes (a subset of `INPUT_NAMES`), which
            are the token-id signature's inputs.
        model_dir: The folder of versions (TensorFlow Serving's model base path).
        tokenizer: The Hugging Face fast tokenizer the model was trained with; without
            it the export has token-id signatures only.
        max_length: Tokens per example the raw-text signature truncates to.
        text_pair: Whether the raw-text signature takes `text_pair` too.
        truncation: Which tokens of a longer text the raw-text signature keeps
            (`data.long_text`), as training kept them.
        stride: With windows, the tokens neighbouring windows share: the raw-text
            signature splits a longer text into windows and returns the mean of their
            probabilities (multi-label: the maximum). None cuts it.
        multi_label: Scores are each label's sigmoid, and the raw-text signature
            also returns the predicted set (`predicted`, and `label` as the names
            joined by "|").
        thresholds: Multi-label: each label's decision threshold (default 0.5),
            applied in the graph and stored as the variable `thresholds`.
        forward: `model`'s traced forward pass (`forward.Forward`), when the run has
            one: the signatures call it instead of tracing the model again.

    Raises:
        ExportError: The SavedModel cannot be written, or its outputs differ from the model's.
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    version = 1 + max((int(p.name) for p in model_dir.iterdir() if p.name.isdigit()), default=0)
    final = model_dir / str(version)
    tokens, reason = _graph_tokenizer(tokenizer, max_length, truncation)
    head = _Head(multi_label, thresholds, len(label_names))
    if forward is None or forward.model is not model:
        forward = Forward(model, input_names)
    module, signatures = _serving_module(forward, label_names, tokens, text_pair, stride, head)
    try:
        with atomic.staged_directory(final) as staging:
            tf.saved_model.save(module, str(staging), signatures=signatures)
            _check_reload(
                staging,
                forward,
                tokenizer if tokens else None,
                max_length,
                text_pair,
                truncation,
                stride,
                head,
            )
            atomic.fault_point("export")
    except (OSError, tf.errors.OpError) as error:
        # TensorFlow's file system reports a full disk as ResourceExhaustedError.
        raise ExportError(
            f"Cannot write the SavedModel to {model_dir}: {short_reason(error)}. "
            "Nothing was exported; fix the cause (disk space?)."
        ) from None
    logger.info("Exported SavedModel version %d to %s.", version, final)
    if reason:
        logger.warning("The SavedModel takes token ids only: %s", reason)
    return Export(path=final, raw_text=tokens is not None, reason=reason)


def _graph_tokenizer(tokenizer, max_length, truncation):
    """The in-graph tokenizer of the tokenizer's family, or None and why there is none."""
    if tokenizer is None:
        return None, "no tokenizer was given to the export."
    import json

    from tf_finetune.export import byte_level_bpe, unigram

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    kind = (spec.get("model") or {}).get("type")
    try:
        if kind == "BPE":
            tables = byte_level_bpe.read_tables(tokenizer, spec)
            return byte_level_bpe.ByteLevelBpeTokenizer(tables, max_length, truncation), None
        if kind == "Unigram":
            tables = unigram.read_tables(tokenizer, spec)
            return unigram.UnigramTokenizer(tables, max_length, truncation), None
        tables = tokenizer_tables.read_tables(tokenizer)
    except tokenizer_tables.UnsupportedTokenizer as error:
        return None, str(error)
    return graph_tokenizer.GraphTokenizer(tables, max_length, truncation), None


class _Head:
    """What the model's logits become: softmax scores and one label, or (multi-label)
    each label's sigmoid and the set of labels that reach their thresholds."""

    def __init__(self, multi_label: bool, thresholds, count: int):
        self.multi_label = multi_label
        default = [DEFAULT_THRESHOLD] * count
        self.thresholds = thresholds if thresholds is not None else default

    def scores(self, logits):
        return tf.sigmoid(logits) if self.multi_label else tf.nn.softmax(logits, axis=-1)

    def per_text(self, scores, rows, count):
        """A text's scores from its windows': their maximum (multi-label) or mean."""
        if self.multi_label:
            return tf.math.unsorted_segment_max(scores, rows, count)
        return tf.math.unsorted_segment_mean(scores, rows, count)

    def outputs(self, scores, names, thresholds) -> dict:
        if not self.multi_label:
            label_id = tf.argmax(scores, axis=-1, output_type=tf.int32)
            return {"label": tf.gather(names, label_id), "label_id": label_id}
        predicted = scores >= thresholds[None, :]
        chosen = tf.where(predicted, tf.broadcast_to(names, tf.shape(scores)), "")
        joined = tf.strings.reduce_join(chosen, axis=-1, separator="|")
        # "a||c" -> "a|c": the empty names of unpredicted labels leave doubled separators.
        label = tf.strings.regex_replace(
            tf.strings.regex_replace(joined, r"\|+", "|"), r"^\||\|$", ""
        )
        return {"predicted": predicted, "label": label}


def _serving_module(forward, label_names, tokens, text_pair, stride, head):
    """Returns the module to save and its signatures, each traced once.

    Both signatures call the model's one trace, `forward` (its transposes as einsums).
    The signatures are concrete functions only: a `tf.function` kept on the module
    would be traced a second time by `tf.saved_model.save` (a second of tracing per
    function for a small model), and a served model calls its signatures alone. They
    are traced without autograph: their loops and branches are TensorFlow's own
    (`tf.while_loop`, `tf.cond`), and rewriting the tokenizers' Python code took 1.9 of
    the 2.4 s this function spent on MiniLM's WordPiece export.
    """
    module = tf.Module()
    # Tracking the variables (and not the Keras model) keeps Keras objects out of the
    # SavedModel: it loads as plain TensorFlow functions over these variables.
    module.model_variables = list(forward.model.variables)
    module.label_names = tf.Variable(label_names, dtype=tf.string, trainable=False)
    names = tf.constant(label_names)
    if head.multi_label:
        module.thresholds = tf.Variable(head.thresholds, dtype=tf.float32, trainable=False)

    @tf.function(autograph=False)
    def predict_token_ids(**given):
        logits = forward(given)
        return {"logits": logits, "probabilities": head.scores(logits)}

    # Exactly the model's inputs, so a tokenizer's own output can be fed as it is.
    token_ids = predict_token_ids.get_concrete_function(**forward.specs)
    if tokens is None:
        return module, {"serving_default": token_ids, TOKEN_IDS_SIGNATURE: token_ids}
    module.tokenizer = tokens
    module.max_length = tf.Variable(tokens.max_length, dtype=tf.int32, trainable=False)
    cutting = tokens.truncation if stride is None else "windows"
    module.truncation = tf.Variable(cutting, dtype=tf.string, trainable=False)
    if stride is not None:
        module.stride = tf.Variable(stride, dtype=tf.int32, trainable=False)

    def logits_by_length(ids, types):
        # Rows are run in chunks of similar length, each padded only to its own longest
        # row: a batch of 64 reviews otherwise pads to nearly twice its real tokens.
        order = tf.argsort(ids.row_lengths(), stable=True)
        count = tf.size(order)
        chunks = (count + SERVING_CHUNK - 1) // SERVING_CHUNK
        logits = tf.TensorArray(
            tf.float32, size=chunks, infer_shape=False, element_shape=[None, len(label_names)]
        )

        def run_chunk(index, logits):
            rows = order[index * SERVING_CHUNK : (index + 1) * SERVING_CHUNK]
            chunk = tokens.pad(tf.gather(ids, rows), tf.gather(types, rows))
            return index + 1, logits.write(index, forward(chunk))

        _, logits = tf.while_loop(lambda index, _: index < chunks, run_chunk, [0, logits])
        return tf.scatter_nd(order[:, None], logits.concat(), [count, len(label_names)])

    def predict(text, pair=None):
        if stride is None:
            ids, types, truncated = tokens.ragged(text, pair)
            scores = head.scores(logits_by_length(ids, types))
        else:  # each text's from its windows'
            ids, types, truncated, rows = tokens.windows(text, stride)
            scores = head.scores(logits_by_length(ids, types))
            scores = head.per_text(scores, rows, tf.shape(text)[0])
        thresholds = module.thresholds if head.multi_label else None
        return {
            "scores": scores,
            "classes": tf.tile(names[None, :], [tf.shape(text)[0], 1]),
            **head.outputs(scores, names, thresholds),
            "truncated": truncated,
        }

    strings = tf.TensorSpec([None], tf.string)
    if text_pair:
        predict_text = tf.function(
            lambda text, text_pair: predict(text, text_pair),
            input_signature=[strings, strings],
            autograph=False,
        )
    else:
        predict_text = tf.function(
            lambda text: predict(text), input_signature=[strings], autograph=False
        )
    serving = predict_text.get_concrete_function()
    return module, {"serving_default": serving, TOKEN_IDS_SIGNATURE: token_ids}


def _check_reload(
    path: Path, forward, tokenizer, max_length, text_pair, truncation, stride, head
) -> None:
    """Reloads the SavedModel and compares it with the model on probe inputs.

    The expected outputs come from the model's trace (`forward`), the one validation
    and the report scored with: the check is that the written files reproduce it,
    and that the raw-text signature, tokenizing in the graph, gives what the Hugging
    Face tokenizer's ids give.
    """
    from tf_finetune.data import tokenization

    loaded = tf.saved_model.load(str(path))
    probe = {
        "input_ids": tf.constant([[2, 5, 7, 3, 0], [2, 9, 3, 0, 0]], tf.int32),
        "attention_mask": tf.constant([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]], tf.int32),
        "token_type_ids": tf.zeros([2, 5], tf.int32),
    }
    # float16 and bfloat16 keep about 3 and 2 significant digits.
    atol = 1e-4 if forward.compute_dtype == "float32" else 2e-2
    expected = forward(probe).numpy()
    token_ids = loaded.signatures[TOKEN_IDS_SIGNATURE]
    served = token_ids(**{n: probe[n] for n in forward.input_names})["logits"].numpy()
    _require_close(served, expected, path, "token ids", atol)
    if tokenizer is None:
        return
    pairs = _PROBE_TEXTS[::-1] if text_pair else None
    texts, expected = [], []
    inputs = list(zip(_PROBE_TEXTS, pairs, strict=True)) if pairs else _PROBE_TEXTS
    if stride is None:
        encoded = [[e] for e in tokenization.encode(tokenizer, inputs, max_length, truncation)]
    else:
        encoded = tokenization.windows(tokenizer, inputs, max_length, stride)
    for index, parts in enumerate(encoded):  # no padding: no pad token needed
        if not parts[0].ids:
            continue  # no token (no special tokens either): no model input to compare
        scores = []
        # A text's windows are all one length but the last: one model call per length.
        for length in sorted({len(part.ids) for part in parts}):
            same = [part for part in parts if len(part.ids) == length]
            given = {
                "input_ids": [part.ids for part in same],
                "attention_mask": [[1] * length for _ in same],
                "token_type_ids": [part.type_ids for part in same],
            }
            given = {n: tf.constant(given[n], tf.int32) for n in forward.input_names}
            scores += list(head.scores(forward(given)).numpy())
        expected.append(np.max(scores, axis=0) if head.multi_label else np.mean(scores, axis=0))
        texts.append((_PROBE_TEXTS[index], pairs[index] if pairs else None))
    expected = np.stack(expected)
    inputs = {"text": tf.constant([text for text, _ in texts])}
    if text_pair:
        inputs["text_pair"] = tf.constant([pair for _, pair in texts])
    served = loaded.signatures["serving_default"](**inputs)["scores"].numpy()
    _require_close(served, expected, path, "raw text", atol)


def _require_close(served, expected, path, what, atol) -> None:
    if not np.allclose(served, expected, atol=atol):
        raise ExportError(
            f"The SavedModel written to {path} does not reproduce the model's outputs on "
            f"{what}; nothing was exported. Report this as a bug."
        )
