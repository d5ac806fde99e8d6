"""Shared fixtures: a tiny random BERT checkpoint and small labelled files.

Everything runs on the CPU with no network: the vocabulary is written here, and the
checkpoint is a randomly initialised 2-layer BERT saved with `save_pretrained`, so it
loads through the same `from_pretrained` path as a real checkpoint.
"""

import os
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["TRANSFORMERS_VERBOSITY"] = "error"
# As the CLI does: tf.keras is tf-keras, so importing TensorFlow skips Keras 3 (~2 s).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# Runs tokenize into a cache of the suite's own, never the user's (one per process:
# tests that count cache hits start from an empty one).
os.environ["TF_FINETUNE_CACHE"] = tempfile.mkdtemp(prefix="tf_finetune-cache-")

import csv
import random
import subprocess
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "rotten_tomatoes"

POSITIVE = ["good", "great", "lovely", "superb", "fine"]
NEGATIVE = ["bad", "awful", "poor", "dull", "boring"]
FILLER = ["the", "film", "was", "a", "plot", "acting", "and", "very", "movie", "story"]
VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    *POSITIVE, *NEGATIVE, *FILLER, ".", ",", "!", "##s", "##ly", "not",
]  # fmt: skip


def make_rows(count, seed, labels=("neg", "pos")):
    """Returns `count` (text, label) rows whose label shows in one sentiment word."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        label = labels[i % len(labels)]
        words = rng.sample(FILLER, rng.randint(2, 7))
        cue = POSITIVE if label == labels[-1] else NEGATIVE
        words.insert(rng.randint(0, len(words)), rng.choice(cue))
        rows.append((" ".join(words) + " .", label))
    return rows


def write_csv(path, rows, header=("text", "label")):
    """Writes rows to a CSV file and returns its path."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A save_pretrained directory with a random 2-layer BERT and its fast tokenizer."""
    from transformers import BertConfig, BertTokenizerFast, TFBertForSequenceClassification

    directory = tmp_path_factory.mktemp("tiny-bert")
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True, model_max_length=64)
    tokenizer.save_pretrained(directory)
    config = BertConfig(vocab_size=len(VOCAB), max_position_embeddings=64, **TINY)
    save_tiny_model(TFBertForSequenceClassification, config, directory)
    return directory


# Two layers of width 32: every tiny model of the tests.
TINY = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=2
)


def save_tiny_model(model_class, config, directory):
    """Saves `model_class(config)`, randomly initialised, with `save_pretrained`.

    The initialisation is seeded: every session trains the same model. Unseeded, some
    draws sat on the easy task's plateau longer than a 3-epoch test allows.
    """
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    model = model_class(config)
    model(model.dummy_inputs)
    model.save_pretrained(directory)


def tiny_fit_options(checkpoint, folder):
    """Writes the easy task's files to `folder`; returns config values for a quick fit.

    128 rows, 4 epochs, batch 8 and a learning rate of 3e-3 take the tiny model from
    chance to about 0.97 test accuracy in a few seconds.
    """
    files = {
        name: write_csv(folder / f"{name}.csv", make_rows(count, seed))
        for name, count, seed in [("train", 128, 1), ("validation", 24, 2), ("test", 32, 3)]
    }
    return {
        "model": str(checkpoint),
        "train_file": str(files["train"]),
        "validation_file": str(files["validation"]),
        "test_file": str(files["test"]),
        "epochs": 4,
        "batch_size": 8,
        "learning_rate": 3e-3,
        "output_dir": str(folder / "runs"),
        "run_name": "tiny",
    }


PROBE_TEXTS = ["a good film .", "dull and boring", "the plot was not very lovely !", ""]


def fit_and_compare_the_export(checkpoint, folder):
    """Fine-tunes `checkpoint` for an epoch of the easy task and checks its raw-text export.

    The export's probabilities on `PROBE_TEXTS` (through `ExportedModel`) must be the
    Python model's on the tokenizer's ids, both read back from the run directory, and
    must differ between texts (or the comparison could not fail).

    Returns:
        The run, and the Python model's probabilities.
    """
    import numpy as np
    import tensorflow as tf
    from transformers import AutoTokenizer, TFAutoModelForSequenceClassification

    from tf_finetune.config import load_config
    from tf_finetune.pipeline import fit
    from tf_finetune.serving.prediction import ExportedModel

    run = fit(load_config(overrides=dict(tiny_fit_options(checkpoint, folder), epochs=1)))
    assert run.token_ids_only_reason is None
    served = ExportedModel(run.run_dir).predict(PROBE_TEXTS)
    tokenizer = AutoTokenizer.from_pretrained(run.run_dir)
    model = TFAutoModelForSequenceClassification.from_pretrained(run.run_dir)
    encoded = tokenizer(PROBE_TEXTS, padding=True, return_tensors="tf")
    expected = tf.nn.softmax(model(dict(encoded), training=False).logits).numpy()
    np.testing.assert_allclose(served, expected, atol=1e-5)
    assert abs(expected[0] - expected[1]).max() > 1e-3  # the texts score differently
    return run, expected


def serve_in_a_fresh_process(saved_model_dir, texts):
    """Returns `serving_default`'s scores from a new interpreter with TensorFlow alone.

    Fails if transformers, tf_finetune or tensorflow-text was imported there.
    """
    import json
    import sys

    script = (
        "import json, sys, tensorflow as tf\n"
        "served = tf.saved_model.load(sys.argv[1]).signatures['serving_default']\n"
        "scores = served(text=tf.constant(json.loads(sys.argv[2])))['scores']\n"
        "leaked = [m for m in ('transformers', 'tf_finetune', 'tensorflow_text')\n"
        "          if m in sys.modules]\n"
        "print(json.dumps({'scores': scores.numpy().tolist(), 'leaked': leaked}))\n"
    )
    # transformers sets TF_USE_LEGACY_KERAS in this process; a server would not have it.
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(saved_model_dir), json.dumps(texts)],
        capture_output=True, text=True, timeout=180, env=env, cwd=saved_model_dir,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    served = json.loads(done.stdout.strip().splitlines()[-1])
    assert served["leaked"] == []
    return served["scores"]


@pytest.fixture(scope="session")
def trained_run(tiny_checkpoint, tmp_path_factory):
    """One finished quick fit (`tiny_fit_options`), shared by every test that only reads it.

    Tests must not write into its run directory; one that trains on from it writes
    its own run elsewhere.
    """
    from tf_finetune.config import load_config
    from tf_finetune.pipeline import fit

    return fit(
        load_config(overrides=tiny_fit_options(tiny_checkpoint, tmp_path_factory.mktemp("fit")))
    )


@pytest.fixture
def fit_options(tiny_checkpoint, tmp_path):
    """Config values for a quick fit of the tiny model on fresh files in `tmp_path`."""
    return tiny_fit_options(tiny_checkpoint, tmp_path)


@pytest.fixture
def sentiment_files(tmp_path):
    """Train (96 rows), validation (24) and test (24) CSV files of the easy task."""
    return {
        name: write_csv(tmp_path / f"{name}.csv", make_rows(count, seed))
        for name, count, seed in [("train", 96, 1), ("validation", 24, 2), ("test", 24, 3)]
    }


@pytest.fixture
def full_disk(tmp_path):
    """A folder on a 1 MiB tmpfs filled to the last byte: a real "No space left on device".

    Mounting needs root (as on the project's machines and CI); elsewhere it is skipped.
    """
    import os

    mount = tmp_path / "full"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        descriptor = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
        size = 1 << 16
        while size:
            try:
                os.write(descriptor, bytes(size))
            except OSError:
                size //= 2
        os.close(descriptor)
        assert os.statvfs(mount).f_bavail == 0
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=False)


# The longest test files (a minute or more each on 2 cores), run first, longest first:
# each file runs whole on one xdist worker (`--dist loadfile`), and one that came last
# kept one worker busy for minutes while the other sat idle. `--no-loadscope-reorder`
# (pyproject.toml) keeps this order: xdist otherwise hands out the files with the most
# tests first, which put these two-test files last.
LONGEST_FILES = (
    "test_multi_worker.py",
    "test_resume.py",
    "test_resume_signals.py",
    "test_families.py",
    "test_long_documents.py",
    "test_fit_controls.py",
    "test_pipeline.py",
    "test_mirrored.py",
    "test_multi_label_fit.py",
)


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONGEST_FILES.index(name) if name in LONGEST_FILES else len(LONGEST_FILES)

    items.sort(key=rank)  # stable: the order within and among the other files is kept
