"""Long texts whose label lives only in their tail: what each truncation strategy learns."""

import csv
import random

import numpy as np
import pytest
from conftest import FILLER, NEGATIVE, POSITIVE, write_csv

from tf_finetune.config import load_config
from tf_finetune.pipeline import fit
from tf_finetune.serving import prediction


def tail_rows(count, seed):
    """Texts of 20 to 30 neutral words, then one sentiment word that gives the label."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        label = ("neg", "pos")[i % 2]
        words = [rng.choice(FILLER) for _ in range(rng.randint(20, 30))]
        words.append(rng.choice(POSITIVE if label == "pos" else NEGATIVE))
        rows.append((" ".join(words) + " .", label))
    return rows


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("long")
    return {
        name: write_csv(folder / f"{name}.csv", tail_rows(count, seed))
        for name, count, seed in [("train", 128, 1), ("validation", 24, 2), ("test", 48, 3)]
    } | {"folder": folder}


def fit_with(files, tiny_checkpoint, truncation, **options):
    return fit(
        load_config(
            overrides=options
            | {
                "model": str(tiny_checkpoint),
                "train_file": str(files["train"]),
                "validation_file": str(files["validation"]),
                "test_file": str(files["test"]),
                "max_length": 12,
                "truncation": truncation,
                "epochs": 4,
                "batch_size": 8,
                "learning_rate": 3e-3,
                "output_dir": str(files["folder"] / "runs"),
                "run_name": options.get("long_text", truncation),
            }
        )
    )


def test_head_misses_a_label_in_the_tail_that_head_tail_keeps(files, tiny_checkpoint):
    accuracy = {}
    # Tail keeps what head_tail keeps here; its cut is tested in test_tokenization.
    for truncation in ("head", "head_tail"):
        run = fit_with(files, tiny_checkpoint, truncation)
        accuracy[truncation] = run.report["accuracy"]
        assert run.report["truncated"] == {
            "texts": 48, "of": 48, "max_length": 12, "truncation": truncation
        }  # fmt: skip
        assert "48 of 48 test texts were longer than 12 tokens" in run.report_text
    assert accuracy["head"] < 0.7, accuracy
    assert accuracy["head_tail"] > 0.9

    # The export cuts raw text as training did: its report is the run's.
    served, _ = prediction.report(run.run_dir, files["test"], files["folder"] / "report")
    assert served["report"]["accuracy"] == accuracy["head_tail"]
    assert served["report"]["truncated"] == run.report["truncated"]
    assert "were cut (head_tail)" in served["text"]


def test_windows_score_each_text_by_all_of_it_in_the_report_and_the_export(files, tiny_checkpoint):
    run = fit_with(files, tiny_checkpoint, "head", long_text="windows", stride=4)
    assert run.report["accuracy"] > 0.9
    assert run.report["truncated"] == {
        "texts": 48, "of": 48, "max_length": 12, "truncation": "windows", "stride": 4
    }  # fmt: skip
    assert "split into windows sharing 4 tokens" in run.report_text
    served, _ = prediction.report(run.run_dir, files["test"], files["folder"] / "windows")
    assert served["report"]["accuracy"] == run.report["accuracy"]
    assert served["report"]["truncated"] == run.report["truncated"]
    # The export's probabilities are the mean of its windows', as the run's report.
    model = prediction.ExportedModel(run.run_dir)
    with open(run.run_dir / "predictions.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    served = model.predict([row["text"] for row in rows])
    expected = [[float(row[f"p_{name}"]) for name in model.label_names] for row in rows]
    np.testing.assert_allclose(served, expected, atol=1e-4)
