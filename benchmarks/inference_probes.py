"""Where a served text's milliseconds go: batch-1 probes on one fitted run.

    make probe-inference RUN=runs/demo   # a MiniLM run with its export in RUN/1
    .venv-bench/bin/python benchmarks/inference_probes.py --run RUN

Times, in one process and in interleaved rounds (median and range of the rounds):
  - a float Transpose (oneDNN's `_MklTranspose` on x86) against an axis-permuting
    Einsum and an Add of the same tensor, at one text's and at batch shapes;
  - the run's Keras model at batch 1 on pre-tokenized validation texts, traced as
    Hugging Face writes it, with its transposes as einsums (what the export does), and
    XLA-compiled (not exported: TensorFlow Serving runs no XLA on CPU by default);
  - the export: its in-graph tokenizer alone, its `serving_default` on raw text, and
    PyTorch eager with the fast tokenizer where torch is installed (the packaged
    all-MiniLM-L6-v2 with a new head: for a MiniLM run, the same shapes).
Writes benchmarks/inference_probes.md.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import statistics
import time
from pathlib import Path

import tensorflow as tf

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = Path(__file__).resolve().parent / "inference_probes.md"


def rounds(candidates: dict, passes: int) -> dict:
    """Median and range of ms per call: every candidate once per round, in turn."""
    for run in candidates.values():
        run()  # untimed: tracing, XLA compiles, oneDNN kernels per new shape
    times = {name: [] for name in candidates}
    for _ in range(passes):
        for name, run in candidates.items():
            times[name].append(run())
    return {name: (statistics.median(t), min(t), max(t)) for name, t in times.items()}


def per_call(function, inputs) -> callable:
    def run():
        start = time.perf_counter()
        for item in inputs:
            function(item)
        return (time.perf_counter() - start) / len(inputs) * 1000

    return run


def transpose_probes(passes: int) -> list[list[str]]:
    from tf_finetune.modeling import transposes

    rows = []
    for batch, length in ((1, 27), (16, 40), (32, 64)):
        tensor = tf.random.normal([batch, length, 12, 32])
        ops = {
            "Transpose": lambda x: tf.transpose(x, [0, 2, 1, 3]),
            "Einsum": lambda x: transposes.einsum_transpose(x, [0, 2, 1, 3]),
            "Add": lambda x: x + 1.0,
        }
        candidates = {}
        for name, op in ops.items():
            # 24 ops a call, each on its own input, as in a 6-layer model.
            traced = tf.function(lambda x, op=op: [op(x + float(i)) for i in range(24)])
            candidates[name] = per_call(traced, [tensor] * 20)
        measured = rounds(candidates, passes)
        rows.append(
            [f"[{batch}, {length}, 12, 32]"]
            + [f"{1000 * measured[name][0] / 24:.0f}" for name in ops]
        )
    return rows


def model_probes(run: Path, texts: list[str], passes: int) -> list[list[str]]:
    from transformers import AutoTokenizer, TFAutoModelForSequenceClassification

    from tf_finetune.export import saved_model
    from tf_finetune.modeling import transposes

    tokenizer = AutoTokenizer.from_pretrained(str(run))
    model = TFAutoModelForSequenceClassification.from_pretrained(str(run))
    names = [n for n in saved_model.INPUT_NAMES if n in tokenizer.model_input_names]
    encoded = [
        {n: tf.constant(v, tf.int32) for n, v in tokenizer([t], truncation=True).items()}
        for t in texts
    ]
    encoded = [{n: item[n] for n in names} for item in encoded]
    spec = {n: tf.TensorSpec([None, None], tf.int32) for n in names}

    def call(inputs):
        return model(inputs, training=False).logits

    plain = tf.function(call).get_concrete_function(spec)
    with transposes.traced_as_einsums():
        einsum = tf.function(call).get_concrete_function(spec)
        xla = tf.function(call, jit_compile=True).get_concrete_function(spec)
    loaded = tf.saved_model.load(str(run / "1"))
    serve = loaded.signatures["serving_default"]
    graph_tokens, _ = saved_model._graph_tokenizer(tokenizer, 512, "head")
    tokenize = tf.function(graph_tokens, input_signature=[tf.TensorSpec([None], tf.string)])
    strings = [tf.constant([t]) for t in texts]
    candidates = {
        "Keras model, as traced by Hugging Face": per_call(plain, encoded),
        "Keras model, transposes as einsums (the export's)": per_call(einsum, encoded),
        "Keras model, XLA (not exported)": per_call(xla, encoded),
        "export: in-graph tokenizer alone": per_call(tokenize, strings),
        "export: serving_default, raw text": per_call(lambda s: serve(text=s), strings),
    }
    torch_model = _torch_predictor()
    if torch_model:
        candidates["PyTorch eager, no_grad, fast tokenizer + model"] = per_call(torch_model, texts)
    measured = rounds(candidates, passes)
    return [
        [name, f"{m:.2f}", f"{low:.2f}-{high:.2f}", f"{1000 / m:.1f}"]
        for name, (m, low, high) in measured.items()
    ]


def _torch_predictor():
    try:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
    except ImportError:
        return None
    from recipes import minilm_path  # beside this script, so on its path

    # The packaged checkpoint's PyTorch weights (loading the run's TF weights into
    # PyTorch leaves meta tensors in transformers 4.54): the same shapes and speed.
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=2)
    model.eval()

    def predict(text):
        with torch.no_grad():
            encoded = tokenizer([text], truncation=True, return_tensors="pt")
            torch.softmax(model(**encoded).logits, -1).numpy()

    return predict


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, type=Path, help="A tf-finetune run directory")
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/rotten_tomatoes"))
    parser.add_argument("--texts", type=int, default=200)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    with open(Path(args.data) / "validation.csv", newline="", encoding="utf-8") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)][: args.texts]
    transposed = transpose_probes(args.passes)
    models = model_probes(args.run, texts, args.passes)
    from tf_finetune.runtime.environment import cpu_model

    text = f"""# Batch-1 inference probes

Microseconds per op, 24 ops a call (a 6-layer encoder's attention transposes):

{table(["tensor", "Transpose (oneDNN)", "Einsum permuting axes", "Add, for scale"], transposed)}

One text a call, {len(texts)} rotten_tomatoes validation texts a pass, {args.passes} passes
after an untimed one, the candidates in turn within each pass (ms per text):

{table(["what", "median ms", "range", "texts/s"], models)}

Command: `.venv-bench/bin/python benchmarks/inference_probes.py --run {args.run}`;
TensorFlow {tf.__version__}, {cpu_model()}, {datetime.date.today().isoformat()}.
"""
    print(text)
    OUTPUT.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
