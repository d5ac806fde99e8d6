"""Fit -> raw-text export -> predict and report from the export, for more architectures.

BERT (test_pipeline), MPNet (test_graph_tokenizer), RoBERTa (test_byte_level_bpe) and
ALBERT (test_unigram) have their own end-to-end tests; these are the other models the
tutorial and its peers name, each with its own tokenizer family and template.
"""

import csv
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import TINY, VOCAB, fit_and_compare_the_export, save_tiny_model
from test_unigram import train_model

WORDPIECE = ("DistilBert", "Electra")


def build(architecture, checkpoint):
    """Saves a tiny random `architecture` and its fast tokenizer to `checkpoint`."""
    import transformers

    if architecture in WORDPIECE:
        vocab = checkpoint / "vocab.txt"
        vocab.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
        tokenizer_class = getattr(transformers, f"{architecture}TokenizerFast")
        tokenizer = tokenizer_class(vocab_file=str(vocab), model_max_length=64)
    else:  # SentencePiece Unigram
        tokenizer_class = getattr(transformers, f"{architecture}TokenizerFast")
        spm = train_model(checkpoint.parent)
        tokenizer = tokenizer_class(vocab_file=str(spm), model_max_length=64)
    tokenizer.save_pretrained(checkpoint)
    sizes = dict(TINY, vocab_size=len(tokenizer), initializer_range=0.5)
    if architecture == "DistilBert":
        sizes.update(dim=32, n_layers=2, n_heads=2, hidden_dim=64)
    if architecture == "Electra":
        sizes.update(embedding_size=16)
    if architecture == "XLMRoberta":
        sizes.update(max_position_embeddings=70, pad_token_id=tokenizer.pad_token_id)
    config = getattr(transformers, f"{architecture}Config")(**sizes)
    model_class = getattr(transformers, f"TF{architecture}ForSequenceClassification")
    save_tiny_model(model_class, config, checkpoint)


def cli_in_a_fresh_process(*commands):
    """Runs `tf-finetune` commands in one new interpreter; their exit codes and output.

    Also says whether transformers was imported there: the export must be enough.
    """
    script = (
        "import json, sys\n"
        "from click.testing import CliRunner\n"
        "from tf_finetune.cli import main\n"
        "results = [CliRunner().invoke(main, args) for args in json.loads(sys.argv[1])]\n"
        "print(json.dumps({'codes': [r.exit_code for r in results],\n"
        "                  'output': [r.stdout for r in results],\n"
        "                  'transformers': 'transformers' in sys.modules}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(commands)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("architecture", [*WORDPIECE, "XLMRoberta", "DebertaV2"])
def test_fit_exports_raw_text_that_predicts_and_reports_as_the_model(architecture, tmp_path):
    from transformers import AutoTokenizer, TFAutoModelForSequenceClassification

    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    build(architecture, checkpoint)
    run, expected = fit_and_compare_the_export(checkpoint, tmp_path)

    test_file = tmp_path / "test.csv"
    done = cli_in_a_fresh_process(
        ["report", str(run.run_dir), "--data", str(test_file), "--output-dir", str(tmp_path / "r")],
        ["predict", str(run.run_dir), "--text", "a good film ."],
    )
    assert done["codes"] == [0, 0], done["output"]
    assert not done["transformers"]
    (predicted,) = csv.DictReader(io.StringIO(done["output"][1]))
    assert [float(predicted["p_neg"]), float(predicted["p_pos"])] == pytest.approx(
        list(expected[0]), abs=1e-5
    )

    # The report's accuracy is the Python model's on the tokenizer's ids.
    with open(test_file, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    tokenizer = AutoTokenizer.from_pretrained(run.run_dir)
    model = TFAutoModelForSequenceClassification.from_pretrained(run.run_dir)
    logits = model(dict(tokenizer([r["text"] for r in rows], padding=True, return_tensors="tf")))
    names = [model.config.id2label[i] for i in np.argmax(logits.logits, axis=1)]
    accuracy = np.mean([name == row["label"] for name, row in zip(names, rows, strict=True)])
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["accuracy"] == pytest.approx(accuracy)
