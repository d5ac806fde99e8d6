"""The phases of `fit` before training, called one by one: no model is trained here."""

import math
import types

import numpy as np
import pytest
import tensorflow as tf
from conftest import make_rows, tiny_fit_options, write_csv
from sklearn.utils.class_weight import compute_class_weight

from tf_finetune import pipeline
from tf_finetune.config import FIELDS, load_config


@pytest.fixture
def options(tiny_checkpoint, tmp_path):
    return tiny_fit_options(tiny_checkpoint, tmp_path)


def test_load_inputs_tokenizes_every_split_and_measures_max_length(options):
    config = load_config(overrides=options)
    assert config.max_length == "auto"
    inputs = pipeline.load_inputs(config)
    assert inputs.data.label_names == ["neg", "pos"]
    assert {name: len(split) for name, split in inputs.tokens.splits.items()} == {
        "train": 128,
        "validation": 24,
        "test": 32,
    }
    # 'auto' is the longest training text in tokens, [CLS] and [SEP] included.
    texts = [text for text, _ in make_rows(128, 1)]
    longest = max(len(ids) for ids in inputs.tokenizer(texts)["input_ids"])
    assert inputs.tokens.max_length == longest
    assert inputs.model_config.id2label == {0: "neg", 1: "pos"}


def test_resolve_config_replaces_every_auto(options, tmp_path):
    config = load_config(overrides=options)
    inputs = pipeline.load_inputs(config)
    run = types.SimpleNamespace(source=tmp_path / "runs" / "tiny")
    resolved = pipeline.resolve_config(config, inputs, tf.distribute.get_strategy(), run)
    assert [name for name in FIELDS if getattr(config, name) == "auto"]  # some were
    assert [name for name in FIELDS if getattr(resolved, name) == "auto"] == []
    assert resolved.max_length == inputs.tokens.max_length
    assert resolved.mixed_precision in ("float32", "mixed_bfloat16", "mixed_float16")
    assert (resolved.output_dir, resolved.run_name) == (str(tmp_path / "runs"), "tiny")
    # What the run directory records reads back as the same run.
    (tmp_path / "fit_config.yaml").write_text(resolved.to_yaml(), encoding="utf-8")
    assert load_config(tmp_path / "fit_config.yaml") == resolved


def test_plan_batches_counts_updates_and_weighs_rare_classes(options, tmp_path):
    # 3 negative reviews for each positive one: 90 rows in batches of 8.
    rows = make_rows(120, 5, labels=("neg", "neg", "neg", "pos"))[:90]
    write_csv(tmp_path / "train.csv", rows)
    settings = dict(options, epochs=3, gradient_accumulation_steps=2, class_weights="balanced")
    config = load_config(overrides=settings)
    inputs = pipeline.load_inputs(config)
    plan = pipeline.plan_batches(config, inputs, tf.distribute.get_strategy())
    assert plan.global_batch == 8
    # 12 batches per epoch (the last of 2 rows), accumulated in pairs: 6 updates.
    assert plan.updates == 3 * math.ceil(math.ceil(90 / 8) / 2) == 18
    labels = [label for _, label in rows]
    expected = compute_class_weight("balanced", classes=np.array(["neg", "pos"]), y=labels)
    assert plan.class_weights == pytest.approx(list(expected))
    assert plan.class_weights[1] > plan.class_weights[0]
    assert plan.fingerprint["labels"] == ["neg", "pos"]
    assert plan.fingerprint["global_batch"] == 8

    # One changed training text changes the training split's fingerprint only.
    rows[0] = ("a lovely film .", rows[0][1])
    write_csv(tmp_path / "train.csv", rows)
    changed = pipeline.plan_batches(
        config, pipeline.load_inputs(config), tf.distribute.get_strategy()
    )
    assert changed.fingerprint["train"] != plan.fingerprint["train"]
    assert changed.fingerprint["test"] == plan.fingerprint["test"]


def test_a_run_fingerprinted_by_an_earlier_version_resumes_with_a_warning(tmp_path, caplog):
    import json

    from tf_finetune.errors import ConfigError

    config = load_config(overrides={"train_file": "train.csv"})
    now = {"labels": ["neg", "pos"], "global_batch": 8, "train": "a" * 32}
    earlier = dict(now, train="b" * 64)  # a SHA-256 of the token ids, as written before
    (tmp_path / pipeline.FINGERPRINT_NAME).write_text(json.dumps(earlier))
    pipeline._check_resumable(tmp_path, config, config, now)
    assert "train data of" in caplog.text and "cannot be checked" in caplog.text
    (tmp_path / pipeline.FINGERPRINT_NAME).write_text(json.dumps(dict(now, train="c" * 32)))
    with pytest.raises(ConfigError, match="train data changed"):
        pipeline._check_resumable(tmp_path, config, config, now)
