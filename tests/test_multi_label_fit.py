"""Multi-label classification end to end: generated data whose labels can be learned."""

import csv
import json
import random

import numpy as np
import pytest
from conftest import FILLER, NEGATIVE, POSITIVE, write_csv

from tf_finetune.config import load_config
from tf_finetune.errors import ConfigError
from tf_finetune.evaluation import multi_label
from tf_finetune.pipeline import fit
from tf_finetune.serving import prediction

LABELS = ["bad", "good", "story"]


def labelled_rows(count, seed):
    """Texts of filler words with any set of cues: a positive word (good), a negative
    word (bad), the word "story" (story); the set is what the text shows."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        chosen = [label for label in LABELS if rng.random() < 0.5] or ["good"]
        words = rng.sample([w for w in FILLER if w != "story"], rng.randint(2, 6))
        cues = {"good": POSITIVE, "bad": NEGATIVE, "story": ["story"]}
        for label in chosen:
            words.insert(rng.randint(0, len(words)), rng.choice(cues[label]))
        rows.append({"text": " ".join(words), "labels": chosen})
    return rows


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _test_rows():
    return labelled_rows(48, 3)


@pytest.fixture(scope="module")
def run(tiny_checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("multi")
    files = {
        name: write_jsonl(folder / f"{name}.jsonl", labelled_rows(count, seed))
        for name, count, seed in [("train", 160, 1), ("validation", 40, 2), ("test", 48, 3)]
    }
    result = fit(
        load_config(
            overrides={
                "model": str(tiny_checkpoint),
                "train_file": str(files["train"]),
                "validation_file": str(files["validation"]),
                "test_file": str(files["test"]),
                "label_column": "labels",
                "tune_thresholds": True,
                "epochs": 10,
                "batch_size": 8,
                "learning_rate": 3e-3,
                "output_dir": str(folder / "runs"),
                "run_name": "multi",
            }
        )
    )
    return result, files


def test_a_multi_label_run_learns_the_cues_and_reports_every_average(run):
    result, _ = run
    report = result.report
    assert report["labels"] == LABELS
    # Predicting every label for every text scores micro F1 0.69 and exact match 0.15
    # here. A tiny random model leaves the plateau of a balanced label late (after
    # 20 epochs, measured, for some seeds): this seed learns two of the three cues.
    truth = np.array([[label in row["labels"] for label in LABELS] for row in _test_rows()])
    everything = 2 * truth.mean() / (1 + truth.mean())
    assert everything < 0.7
    assert report["micro avg"]["f1-score"] > 0.85
    assert report["exact_match"] > 0.5
    assert sum(report[name]["f1-score"] > 0.95 for name in LABELS) >= 2
    assert {"macro avg", "weighted avg", "samples avg"} <= set(report)
    assert report["thresholds"]["tuned"] and len(report["thresholds"]["values"]) == 3
    assert set(report["label_confusion"]["good"]) == {"tp", "fp", "fn", "tn"}
    assert "Exact match (every label right)" in result.report_text
    assert "thresholds tuned on validation" in result.report_text
    history = result.history
    assert {"val_micro_f1", "val_samples_f1", "val_macro_f1"} <= set(history)
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert config["decision_thresholds"] == report["thresholds"]["values"]


def test_the_export_predicts_each_label_and_the_set_with_the_tuned_thresholds(run, tmp_path):
    result, files = run
    model = prediction.ExportedModel(result.run_dir)
    assert model.multi_label and model.thresholds == pytest.approx(
        result.report["thresholds"]["values"]
    )
    with open(result.run_dir / "predictions.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    scores = model.predict([row["text"] for row in rows])
    written = [[float(row[f"p_{name}"]) for name in LABELS] for row in rows]
    np.testing.assert_allclose(scores, written, atol=1e-4)
    assert model.labels(scores) == [row["predicted"] for row in rows]
    served, _ = prediction.report(result.run_dir, files["test"], label_column="labels")
    assert served["report"]["micro avg"] == result.report["micro avg"]
    assert served["report"]["exact_match"] == result.report["exact_match"]
    # The same test set written as a 0/1 column per label, and as delimited strings.
    rows = _test_rows()
    columns = tmp_path / "columns.csv"
    write_csv(
        columns,
        [(row["text"], *(int(n in row["labels"]) for n in LABELS)) for row in rows],
        header=("text", *LABELS),
    )
    joined = [(row["text"], "|".join(row["labels"])) for row in rows]
    delimited = write_csv(tmp_path / "joined.csv", joined)
    for data, options in [(columns, {"label_columns": LABELS}), (delimited, {})]:
        again, _ = prediction.report(result.run_dir, data, tmp_path / data.stem, **options)
        assert again["report"]["micro avg"] == result.report["micro avg"]


def test_thresholds_are_tuned_only_for_multi_label_data(fit_options):
    with pytest.raises(ConfigError, match="tune_thresholds chooses multi-label"):
        fit(load_config(overrides=dict(fit_options, tune_thresholds=True)))


def test_a_windowed_multi_label_export_takes_each_labels_highest_window(run, tmp_path):
    import tensorflow as tf
    from transformers import AutoTokenizer, TFAutoModelForSequenceClassification

    from tf_finetune.data import tokenization
    from tf_finetune.export import saved_model

    result, _ = run
    tokenizer = AutoTokenizer.from_pretrained(result.run_dir)
    model = TFAutoModelForSequenceClassification.from_pretrained(result.run_dir)
    thresholds = result.report["thresholds"]["values"]
    exported = saved_model.export_saved_model(
        model, LABELS, ["input_ids", "attention_mask", "token_type_ids"], tmp_path,
        tokenizer=tokenizer, max_length=8, stride=2, multi_label=True, thresholds=thresholds,
    )  # fmt: skip
    served = prediction.ExportedModel(exported.path)
    # Each cue sits in a window of its own: only the maximum keeps both.
    text = "the film was good and the plot was very very dull and the acting was"
    windows = tokenization.windows(tokenizer, [text], 8, 2)[0]
    assert len(windows) > 2
    per_window = [
        tf.sigmoid(model({"input_ids": tf.constant([w.ids])}, training=False).logits)[0].numpy()
        for w in windows
    ]
    scores = served.run([text])
    np.testing.assert_allclose(scores["scores"][0], np.max(per_window, axis=0), atol=1e-5)
    assert scores["truncated"].tolist() == [True]
    assert served.labels(scores["scores"]) == [
        multi_label.label_set(np.max(per_window, axis=0) >= thresholds, LABELS)
    ]
