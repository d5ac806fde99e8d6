"""Times the in-graph tokenizers of each family on rotten_tomatoes, against WordPiece.

    .venv/bin/python benchmarks/tokenizer_speed.py [--output benchmarks/tokenizer_speed.md]

WordPiece is the packaged all-MiniLM-L6-v2 tokenizer (30,522 pieces); byte-level BPE
(RoBERTa's settings) and SentencePiece Unigram (XLM-RoBERTa's) are trained here on
rotten_tomatoes' training texts, 8,000 pieces each.
Each tokenizer runs as a traced `tf.function` over the 10,662 texts in batches of 64,
and over the first 1,000 one by one, after a warm-up; the figure is the median texts
per second of three passes, and each family's ratio to WordPiece on the same machine
in the same run.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "rotten_tomatoes"


def texts() -> list[str]:
    rows = []
    for split in ("train", "validation", "test"):
        with open(DATA / f"{split}.csv", newline="", encoding="utf-8") as handle:
            rows += [row["text"] for row in csv.DictReader(handle)]
    return rows


def tokenizers(corpus: list[str]) -> dict:
    """The graph tokenizer of each family, by name."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import AutoTokenizer, RobertaTokenizerFast

    from tf_finetune.data.packaged import model_path
    from tf_finetune.export import byte_level_bpe, graph_tokenizer, tokenizer_tables

    wordpiece = AutoTokenizer.from_pretrained(model_path("packaged:all-MiniLM-L6-v2"))
    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(
        corpus[:8530], vocab_size=8000, special_tokens=["<s>", "<pad>", "</s>", "<unk>"]
    )
    folder = Path(tempfile.mkdtemp())
    trainer.save(str(folder / "tokenizer.json"))
    bpe = RobertaTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))
    spec = json.loads(bpe.backend_tokenizer.to_str())
    import sentencepiece as spm
    from transformers import XLMRobertaTokenizerFast

    from tf_finetune.export import unigram

    (folder / "train.txt").write_text("\n".join(corpus[:8530]), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(folder / "train.txt"),
        model_prefix=str(folder / "spm"),
        vocab_size=8000,
        model_type="unigram",
        minloglevel=2,
    )
    sentencepiece = XLMRobertaTokenizerFast(vocab_file=str(folder / "spm.model"))
    unigram_spec = json.loads(sentencepiece.backend_tokenizer.to_str())
    return {
        "WordPiece (MiniLM)": graph_tokenizer.GraphTokenizer(
            tokenizer_tables.read_tables(wordpiece), 128
        ),
        "byte-level BPE (RoBERTa-style)": byte_level_bpe.ByteLevelBpeTokenizer(
            byte_level_bpe.read_tables(bpe, spec), 128
        ),
        "SentencePiece Unigram (XLM-R-style)": unigram.UnigramTokenizer(
            unigram.read_tables(sentencepiece, unigram_spec), 128
        ),
    }


def large_vocabulary_seconds(corpus: list[str]) -> tuple[float, float]:
    """Seconds to read a 250,000-piece Unigram tokenizer's tables, and to build and call it.

    XLM-RoBERTa's size: a SentencePiece model trained here, its vocabulary padded with
    generated pieces. Run first in the process: the per-character probes are cached.
    """
    import random

    import sentencepiece as spm
    import tensorflow as tf
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast, XLMRobertaTokenizerFast

    from tf_finetune.export import unigram

    folder = Path(tempfile.mkdtemp())
    (folder / "train.txt").write_text("\n".join(corpus[:8530]), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(folder / "train.txt"), model_prefix=str(folder / "spm"), vocab_size=8000,
        model_type="unigram", minloglevel=2,
    )  # fmt: skip
    spec = json.loads(
        XLMRobertaTokenizerFast(vocab_file=str(folder / "spm.model")).backend_tokenizer.to_str()
    )
    rng, letters = random.Random(0), "abcdefghijklmnopqrstuvwxyzéèàçñöüßжзиклмнλμπφψω"
    known = {piece for piece, _ in spec["model"]["vocab"]}
    while len(spec["model"]["vocab"]) < 250_000:
        piece = "▁" * rng.randint(0, 1) + "".join(rng.choices(letters, k=rng.randint(2, 12)))
        if piece not in known:
            known.add(piece)
            spec["model"]["vocab"].append([piece, -rng.uniform(8, 20)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)), pad_token="<pad>"
    )
    start = time.perf_counter()
    tables = unigram.read_tables(tokenizer, spec)
    read = time.perf_counter() - start
    start = time.perf_counter()
    graph = unigram.UnigramTokenizer(tables, 128)
    tf.function(graph.__call__)(tf.constant(corpus[:64]))["input_ids"].numpy()
    return read, time.perf_counter() - start


def texts_per_second(tokenize, corpus: list[str], batch: int) -> float:
    import tensorflow as tf

    batches = [tf.constant(corpus[i : i + batch]) for i in range(0, len(corpus), batch)]
    for chunk in batches[:3]:
        tokenize(chunk)
    rates = []
    for _ in range(3):  # the median of three passes: this machine is shared
        start = time.perf_counter()
        for chunk in batches:
            tokenize(chunk)["input_ids"].numpy()
        rates.append(len(corpus) / (time.perf_counter() - start))
    return sorted(rates)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "tokenizer_speed.md")
    args = parser.parse_args()
    import tensorflow as tf

    corpus = texts()
    read, built = large_vocabulary_seconds(corpus)
    rows = []
    for name, graph in tokenizers(corpus).items():
        tokenize = tf.function(graph.__call__, input_signature=[tf.TensorSpec([None], tf.string)])
        rows.append(
            (
                name,
                texts_per_second(tokenize, corpus, 64),
                texts_per_second(tokenize, corpus[:1000], 1),
            )
        )
    base = rows[0]
    lines = [
        f"Command: `{' '.join([Path(sys.executable).name, *sys.argv])}`",
        "",
        "| tokenizer | texts/s, batch 64 | vs WordPiece | texts/s, batch 1 | vs WordPiece |",
        "|---|---|---|---|---|",
    ]
    for name, batched, single in rows:
        lines.append(
            f"| {name} | {batched:,.0f} | {batched / base[1]:.2f}x | {single:,.0f} | "
            f"{single / base[2]:.2f}x |"
        )
    lines += [
        "",
        f"A 250,000-piece Unigram vocabulary (XLM-RoBERTa's size): tables read in {read:.1f} s, "
        f"graph tokenizer built and first called in {built:.1f} s.",
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    args.output.write_text(table, encoding="utf-8")


if __name__ == "__main__":
    main()
