"""Turning tokenized splits into batched `tf.data` pipelines.

Three padding modes (the `padding` config key):
- "grouped" (the default): each epoch shuffles the examples, sorts them by length
  within chunks of `GROUP_CHUNK_BATCHES` batches, cuts the chunks into batches and
  shuffles the batches. Each batch is padded to its longest example rounded up to
  `pad_to_multiple_of`, so little compute goes to padding. With `length_buckets`, the
  padded lengths are instead a few fixed ones chosen from the split's length
  distribution (`bucket_widths`): XLA compiles a step once per shape.
- "dynamic": random batches, each padded to its longest example (what
  `DataCollatorWithPadding` does).
- "max_length": the tutorial's recipe: examples padded to `max_length` at tokenization,
  stacked by `DefaultDataCollator` through `Dataset.to_tf_dataset`.

The grouped and dynamic pipelines read the token ids from memory as ragged tensors and
pad each batch inside the graph; every batch of every epoch is planned up front from
the seed, so a run's padding statistics are known exactly and runs repeat.
"""

from __future__ import annotations

import dataclasses
import itertools

import datasets
import numpy as np
import pyarrow
import tensorflow as tf

from tf_finetune.data import tokenization

# A chunk of this many batches is sorted by length before it is cut into batches:
# large enough that neighbours in a chunk have nearly the same length, small enough
# that each batch still mixes examples from across the split.
GROUP_CHUNK_BATCHES = 64
# Batches made ahead of the step that takes them: the next one is ready as a step ends.
PREFETCH_BATCHES = 2


@dataclasses.dataclass(frozen=True)
class PaddingStats:
    """Token counts of one pass over a split.

    Attributes:
        examples: Examples in the pass.
        real_tokens: Tokens of the examples themselves.
        padded_tokens: Tokens fed to the model, padding included.
    """

    examples: int
    real_tokens: int
    padded_tokens: int

    @property
    def padding_share(self) -> float:
        """The share of fed tokens that are padding."""
        return 1.0 - self.real_tokens / self.padded_tokens if self.padded_tokens else 0.0


@dataclasses.dataclass
class Batches:
    """A batched split and what one pass over it feeds the model.

    Attributes:
        dataset: `(features, labels)` batches; for training, every epoch back to back.
        steps: Batches per epoch.
        epoch_padding: Padding statistics of each epoch (one entry for evaluation).
        widths: The padded length of each batch the dataset yields, in order.
        order: For evaluation, the split index of each example in the order the
            batches yield them; `restore_order` puts predictions back in split order.
    """

    dataset: tf.data.Dataset
    steps: int
    epoch_padding: list[PaddingStats]
    widths: list[int] | None = None
    order: np.ndarray | None = None

    def restore_order(self, values: np.ndarray) -> np.ndarray:
        """Returns per-example `values` (in batch order) rearranged into split order."""
        if self.order is None:
            return values
        restored = np.empty_like(values)
        restored[self.order] = values
        return restored

    def padding(self, epoch: int) -> PaddingStats:
        """Returns the padding statistics of an epoch (0-based)."""
        return self.epoch_padding[min(epoch, len(self.epoch_padding) - 1)]


@dataclasses.dataclass(frozen=True)
class BatchRecipe:
    """How a run turns its tokenized splits into batches: the `padding` setting's pipeline.

    Attributes:
        padding: "grouped", "dynamic" or "max_length" (see `FitConfig.padding`).
        input_names: The model inputs to feed.
        pad_values: Each input's padding value (`pad_values`).
        global_batch: Examples per batch, over every replica.
        max_length: Tokens per example at most.
        pad_to_multiple_of: Batch widths are rounded up to a multiple of this.
        length_buckets: Pad every batch to one of at most this many lengths
            (`bucket_widths`); 0 pads each batch to its own longest example.
    """

    padding: str
    input_names: list[str]
    pad_values: dict[str, int]
    global_batch: int
    max_length: int
    pad_to_multiple_of: int = 1
    length_buckets: int = 0

    def batches(
        self, split: datasets.Dataset, epochs: int = 1, seed: int | None = None, first_step=0
    ) -> Batches:
        """Training batches when `seed` is given (shuffled per epoch), else evaluation ones."""
        if self.padding == "max_length":
            return collated_batches(
                split,
                self.input_names,
                self.global_batch,
                epochs=epochs,
                seed=seed,
                first_step=first_step,
            )
        return grouped_batches(
            split,
            self.input_names,
            self.pad_values,
            self.global_batch,
            # Evaluation order does not matter (predictions are put back in split
            # order), so evaluation always groups.
            group=self.padding == "grouped" or seed is None,
            epochs=epochs,
            seed=seed,
            pad_to_multiple_of=self.pad_to_multiple_of,
            max_length=self.max_length,
            length_buckets=self.length_buckets,
            first_step=first_step,
        )


def pad_values(tokenizer) -> dict[str, int]:
    """Returns the value that pads each model input of `tokenizer`."""
    return {
        "input_ids": tokenizer.pad_token_id or 0,
        "token_type_ids": tokenizer.pad_token_type_id,
        "attention_mask": 0,
    }


def example_lengths(split: datasets.Dataset) -> np.ndarray:
    """Returns the real (unpadded) token count of each example of a tokenized split."""
    if "attention_mask" not in split.column_names:  # unpadded: each row is its tokens
        return tokenization.row_lengths(split)
    return _mask_sums(*_list_column(split, "attention_mask"))


def _mask_sums(masks: np.ndarray, row_lengths: np.ndarray) -> np.ndarray:
    rows = np.repeat(np.arange(len(row_lengths)), row_lengths)
    return np.bincount(rows, weights=masks, minlength=len(row_lengths)).astype(np.int64)


def _list_column(split: datasets.Dataset, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Returns a column of token lists as flat values and row lengths, read from Arrow.

    The values keep their stored type (int32 ids, int8 token types): one copy, out of
    the memory-mapped file. Going through Python lists would cost about 30 bytes a token.
    """
    column = split.with_format("arrow")[name].combine_chunks()
    return column.flatten().to_numpy(), column.value_lengths().to_numpy().astype(np.int64)


def plan_batches(
    lengths: np.ndarray,
    batch_size: int,
    group: bool,
    rng: np.random.Generator | None,
) -> list[np.ndarray]:
    """Returns the example indices of each batch of one pass.

    Args:
        lengths: Real token count of each example.
        batch_size: Examples per batch; only the last batch may be smaller.
        group: Sort by length (within chunks when shuffling, over the whole split
            otherwise) so a batch holds examples of similar length.
        rng: Shuffles examples and batches; None keeps the split order (evaluation).
    """
    count = len(lengths)
    order = rng.permutation(count) if rng is not None else np.arange(count)
    if group:
        chunk = count if rng is None else batch_size * GROUP_CHUNK_BATCHES
        order = np.concatenate(
            [
                part[np.argsort(lengths[part], kind="stable")]
                for part in np.split(order, range(chunk, count, chunk))
            ]
        )
    batches = np.split(order, range(batch_size, count, batch_size))
    if group and rng is not None:
        # The partial batch stays last, so each epoch has the same full batches.
        full = batches[:-1] if len(batches[-1]) < batch_size else batches
        rest = batches[len(full) :]
        batches = [full[i] for i in rng.permutation(len(full))] + rest
    return batches


def batches_per_pass(count: int, batch_size: int) -> int:
    """Returns the batches of one pass over `count` examples; only the last is partial."""
    return -(-count // batch_size)


def padded_width(longest: int, multiple: int, cap: int) -> int:
    """Returns the padded length of a batch whose longest example has `longest` tokens."""
    rounded = -(-longest // multiple) * multiple
    return max(longest, min(rounded, cap))


def bucket_widths(widths: np.ndarray, sizes: np.ndarray, count: int) -> np.ndarray:
    """Returns at most `count` padded lengths that hold every batch at the least padding.

    Each batch is then padded to the shortest of them that holds it (`to_buckets`), so
    a run feeds the model at most `count` lengths: XLA compiles each once, where
    unbounded lengths made it compile nearly every step. The choice is exact: a
    dynamic program over the distinct widths minimises the tokens fed,
    `sum(size * bucket)`. The longest width is always a bucket.

    Args:
        widths: The length each batch needs (its longest example, rounded).
        sizes: The examples in each batch.
        count: Buckets at most (at least 1).
    """
    values, inverse = np.unique(np.asarray(widths, np.int64), return_inverse=True)
    if len(values) <= count:
        return values
    # upto[j]: examples in the batches that need values[j] or less.
    upto = np.cumsum(np.bincount(inverse, weights=np.asarray(sizes, np.float64)))
    # cost[j]: fewest tokens that feed the batches needing values[:j + 1] when the
    # longest bucket is values[j]; with one bucket, that is all of them at values[j].
    cost = values * upto
    rows, columns = np.indices((len(values), len(values)))
    choices = []
    for _ in range(count - 1):
        # One more bucket: values[j] above the best buckets ending at values[i], i < j.
        total = cost[None, :] + values[:, None] * (upto[:, None] - upto[None, :])
        total = np.where(columns < rows, total, np.inf)
        below = total.argmin(axis=1)
        cost = total[np.arange(len(values)), below]
        choices.append(below)
    chosen = [len(values) - 1]
    for below in reversed(choices):
        chosen.append(int(below[chosen[-1]]))
    return values[sorted(chosen)]


def to_buckets(widths: np.ndarray, buckets: np.ndarray) -> np.ndarray:
    """Returns each width raised to the shortest bucket that holds it."""
    return buckets[np.searchsorted(buckets, widths)]


def grouped_batches(
    split: datasets.Dataset,
    input_names: list[str],
    pad_values: dict[str, int],
    batch_size: int,
    *,
    group: bool,
    epochs: int = 1,
    seed: int | None = None,
    pad_to_multiple_of: int = 1,
    max_length: int | None = None,
    length_buckets: int = 0,
    first_step: int = 0,
) -> Batches:
    """Returns length-grouped (or random) batches padded inside the graph.

    Args:
        split: A tokenized, unpadded split with `labels`.
        input_names: Model input columns to feed.
        pad_values: The padding value of each input column (a missing name pads with 0).
        batch_size: The global batch size (per replica times replicas).
        group: Group examples of similar length ("grouped"), or not ("dynamic").
        epochs: Passes to plan; the dataset yields them back to back, so `fit` needs
            `steps_per_epoch=steps`.
        seed: Shuffles each epoch differently but repeatably; None keeps the split
            order (evaluation) and plans one pass.
        pad_to_multiple_of: Round each batch's length up to a multiple of this.
        max_length: Rounding never pads past this length.
        length_buckets: Pad to at most this many lengths, chosen from the first
            epoch's batches (`bucket_widths`); a partial batch takes the longest, so
            it adds no shape of its own. 0 pads each batch to its own longest.
        first_step: Leave out the first this many batches of the plan: a resumed run
            continues with exactly the batches an uninterrupted run would feed next.
    """
    raw, lengths = _token_columns(split, input_names)
    cap = max_length or int(lengths.max(initial=1))
    rng = np.random.default_rng(seed) if seed is not None else None
    plans = [plan_batches(lengths, batch_size, group, rng) for _ in range(epochs)]
    widths = [
        [padded_width(int(lengths[b].max()), pad_to_multiple_of, cap) for b in plan]
        for plan in plans
    ]
    if length_buckets:
        # Every epoch holds the longest example, so the first epoch's longest bucket
        # holds every epoch's batches; choosing from one epoch keeps the buckets of a
        # run whose epochs are raised on resume.
        sizes = [len(b) for b in plans[0]]
        buckets = bucket_widths(np.array(widths[0]), np.array(sizes), length_buckets)
        widths = [
            [
                int(buckets[-1]) if len(b) < batch_size else int(to_buckets(w, buckets))
                for w, b in zip(plan_widths, plan, strict=True)
            ]
            for plan, plan_widths in zip(plans, widths, strict=True)
        ]
    stats = [
        PaddingStats(
            examples=len(lengths),
            real_tokens=int(lengths.sum()),
            padded_tokens=sum(w * len(b) for w, b in zip(plan_widths, plan, strict=True)),
        )
        for plan, plan_widths in zip(plans, widths, strict=True)
    ]
    labels = label_array(split)
    dataset = _padded_dataset(
        raw, lengths, labels, input_names, pad_values, plans, widths, first_step
    )
    order = np.concatenate(plans[0]) if seed is None else None
    return Batches(
        dataset=dataset,
        steps=len(plans[0]),
        epoch_padding=stats,
        widths=list(itertools.chain.from_iterable(widths))[first_step:],
        order=order,
    )


class TokenRows:
    """Rows of a stored token column, read in place from its Arrow chunks.

    The chunks of a cached split are memory-mapped: a batch copies its own rows out and
    nothing else is held, whatever the split's size.
    """

    def __init__(self, column):
        chunks = column.chunks
        self._values = [chunk.values.to_numpy() for chunk in chunks]  # views, not copies
        self._offsets = [chunk.offsets.to_numpy() for chunk in chunks]
        sizes = [len(chunk) for chunk in chunks]
        self._starts = np.cumsum([0, *sizes])[:-1]
        self.lengths = np.concatenate(
            [np.diff(offsets) for offsets in self._offsets] or [np.zeros(0, np.int64)]
        ).astype(np.int64)
        self.dtype = self._values[0].dtype if chunks else np.int32

    def padded(self, rows: np.ndarray, width: int, pad: int) -> np.ndarray:
        """The rows `[len(rows), width]`, each cut to `width` and padded with `pad`."""
        out = np.full((len(rows), width), pad, self.dtype)
        chunk_of = np.searchsorted(self._starts, rows, side="right") - 1
        for i, (row, chunk) in enumerate(zip(rows, chunk_of, strict=True)):
            offsets = self._offsets[chunk]
            local = row - self._starts[chunk]
            start, end = offsets[local], offsets[local + 1]
            end = min(end, start + width)
            out[i, : end - start] = self._values[chunk][start:end]
        return out


def _token_columns(split: datasets.Dataset, input_names: list[str]):
    """Each stored token column's rows, and the examples' lengths.

    An `attention_mask` the split does not store is made per batch from the lengths.

    Raises:
        ValueError: A column is padded (its rows are longer than the attention mask).
    """
    stored = [n for n in input_names if n in split.column_names and n != "attention_mask"]
    arrow = split.with_format("arrow")
    raw = {name: TokenRows(arrow[name]) for name in stored}
    if "attention_mask" in split.column_names:
        lengths = _mask_sums(*_list_column(split, "attention_mask"))
    else:
        lengths = raw["input_ids"].lengths
    for name, rows in raw.items():
        if not np.array_equal(rows.lengths, lengths):
            raise ValueError(f"Column {name!r} is padded; grouped batching needs unpadded tokens.")
    return raw, lengths


def _padded_dataset(raw, lengths, labels, input_names, pad_values, plans, widths, first_step):
    """The planned batches, every epoch back to back, each gathered and padded as it is fed.

    A generator reads each batch's rows out of the stored columns, so memory stays flat
    however large the split.
    """
    all_batches = list(itertools.chain.from_iterable(plans))[first_step:]
    all_widths = list(itertools.chain.from_iterable(widths))[first_step:]

    def generate():
        for batch, width in zip(all_batches, all_widths, strict=True):
            features = {
                name: rows.padded(batch, width, pad_values.get(name, 0)).astype(np.int32)
                for name, rows in raw.items()
            }
            if "attention_mask" in input_names:
                features["attention_mask"] = (
                    np.arange(width)[None, :] < lengths[batch][:, None]
                ).astype(np.int32)
            yield {name: features[name] for name in input_names}, labels[batch]

    spec = tf.TensorSpec([None, None], tf.int32)
    dataset = tf.data.Dataset.from_generator(
        generate,
        output_signature=(
            {name: spec for name in input_names},
            tf.TensorSpec([None, *labels.shape[1:]], tf.as_dtype(labels.dtype)),
        ),
    ).prefetch(PREFETCH_BATCHES)
    return _with_options(dataset)


def collated_batches(
    split: datasets.Dataset,
    input_names: list[str],
    batch_size: int,
    *,
    epochs: int = 1,
    seed: int | None = None,
    first_step: int = 0,
) -> Batches:
    """Returns the tutorial's batches: `to_tf_dataset` with `DefaultDataCollator`.

    The split must be padded to `max_length` at tokenization. Each epoch's shuffle is
    drawn from `seed` up front (as in `grouped_batches`), so runs repeat and a resumed
    run can start at any batch; `seed=None` keeps the split order and plans one pass.
    """
    from transformers import DefaultDataCollator

    count = len(split)
    steps = batches_per_pass(count, batch_size)
    rng = np.random.default_rng(seed) if seed is not None else None
    passes = []
    for epoch in range(epochs):
        order = rng.permutation(count) if rng is not None else np.arange(count)
        skipped = min(max(first_step - epoch * steps, 0), steps) * batch_size
        if skipped < count:
            passes.append(split.select(order[skipped:]))
    batches = [
        part.to_tf_dataset(
            columns=input_names,
            label_cols="labels",
            batch_size=batch_size,
            shuffle=False,
            collate_fn=DefaultDataCollator(return_tensors="np"),
            drop_remainder=False,
            prefetch=True,
        )
        for part in passes
    ]
    dataset = batches[0] if batches else None
    for more in batches[1:]:
        dataset = dataset.concatenate(more)
    if dataset is not None:
        dataset = _with_options(dataset)
    lengths = example_lengths(split)
    width = len(split[0]["input_ids"]) if count else 0
    stats = PaddingStats(
        examples=count, real_tokens=int(lengths.sum()), padded_tokens=width * count
    )
    return Batches(dataset=dataset, steps=steps, epoch_padding=[stats])


def label_array(split: datasets.Dataset) -> np.ndarray:
    """The split's labels: class ids `[N]` (int64), or multi-label 0/1 rows `[N, labels]`
    (float32, the binary cross-entropy's targets)."""
    column = split.with_format("arrow")["labels"]
    if pyarrow.types.is_list(column.type):
        rows = column.combine_chunks()
        width = int(rows.value_lengths()[0].as_py()) if len(rows) else 0
        return rows.flatten().to_numpy().reshape(len(rows), width).astype(np.float32)
    return np.asarray(split["labels"][:], np.int64)


def _with_options(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Sets how the batches are fed: without tf.data's autotuning, shared out by data.

    Autotuning would size the prefetch buffer, which is fixed here; its background
    thread made deleting an iterator wait up to 4.5 s (measured on 2 cores), and every
    prediction, and every `fit`, deletes one at its end.

    The pipelines read from memory, so there are no files to shard by. With the DATA
    policy every worker builds the same planned global batches from the seed and keeps
    its replicas' slices of each, so a step trains on exactly the batch a single device
    would (a per-worker split by file or by batch would change the batches, and with
    them the loss of each step). Reading the whole split on every worker costs little:
    it is in memory and gathering a batch is cheap next to a training step.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
