"""The fine-tuning run: data -> tokens -> tf.data -> model -> fit -> report -> export.

`fit(config)` is what `tf-finetune fit` calls; a notebook can call it too.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from tf_finetune import data as data_stage
from tf_finetune.config import FitConfig
from tf_finetune.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class FitResult:
    """What a run produced.

    Attributes:
        run_dir: The run directory (Hugging Face checkpoint, config, report, logs).
        saved_model_dir: The SavedModel version folder inside `run_dir`.
        raw_text_unsupported: Why `serving_default` takes token ids instead of raw text,
            or None when it takes raw text.
        log_dir: TensorBoard logs.
        report: scikit-learn's report dict plus `confusion_matrix` and `labels`.
        report_text: The report as text.
        eval_split: The split the report scores ("test", or "validation" without test).
        history: Keras metrics per epoch.
        train_seconds: Wall time of `model.fit`.
    """

    run_dir: Path
    saved_model_dir: Path
    log_dir: Path
    report: dict
    report_text: str
    eval_split: str
    history: dict
    train_seconds: float
    raw_text_unsupported: str | None = None


def fit(config: FitConfig, verbose: int = 0) -> FitResult:
    """Fine-tunes, evaluates and exports the classifier that `config` describes.

    Args:
        config: A resolved `FitConfig` (see `config.load_config`).
        verbose: Keras progress output (0 silent, 1 progress bar, 2 a line per epoch).

    Raises:
        TfFinetuneError: A subclass naming what is wrong with the config, data or model.
    """
    from tf_finetune.environment import check_environment

    check_environment()
    run_dir = _claim_run_dir(config)

    import tf_keras

    from tf_finetune import (
        distribution,
        evaluation,
        export,
        modeling,
        tf_data,
        tokenization,
        training,
    )

    tf_keras.utils.set_random_seed(config.seed)
    model_path = modeling.resolve_model_path(config.model)
    data = data_stage.load_data(config)
    model_config = modeling.load_model_config(model_path, data.label_names)
    tokenizer = tokenization.load_tokenizer(model_path)
    tokens = tokenization.tokenize(
        data.splits,
        tokenizer,
        config.max_length,
        config.padding,
        tokenization.length_limit(tokenizer, model_config),
    )

    strategy = distribution.select_strategy()
    global_batch = config.batch_size * strategy.num_replicas_in_sync
    collator = tf_data.make_collator(tokenizer, config.padding)

    def batches(split, shuffle):
        return tf_data.to_tf_dataset(
            tokens.splits[split], tokens.input_names, collator, global_batch, shuffle
        )

    with strategy.scope():
        model = modeling.build_model(model_path, model_config)
        modeling.compile_model(model, config.learning_rate)

    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = dataclasses.replace(config, max_length=tokens.max_length)
    resolved.write_yaml(run_dir / "fit_config.yaml")
    log_dir = run_dir / "logs"
    started = time.perf_counter()
    history = training.train(
        model,
        batches("train", True),
        batches("validation", False),
        config.epochs,
        log_dir,
        verbose,
    )
    train_seconds = time.perf_counter() - started

    split = data.eval_split
    probabilities = evaluation.predict_probabilities(model, batches(split, False))
    y_true = tokens.splits[split]["labels"][:]
    report = evaluation.build_report(y_true, probabilities, data.label_names)
    report_text = evaluation.format_report(y_true, probabilities, data.label_names)
    logger.info(
        "%s accuracy %.4f, macro F1 %.4f.",
        split,
        report["accuracy"],
        report["macro avg"]["f1-score"],
    )

    _write_checkpoint_and_report(
        run_dir, model, tokenizer, data, report, report_text, y_true, probabilities
    )
    exported = export.export_saved_model(
        model,
        data.label_names,
        tokens.input_names,
        run_dir,
        tokenizer=tokenizer,
        max_length=tokens.max_length,
        text_pair=data.has_text_pair,
    )
    return FitResult(
        run_dir,
        exported.path,
        log_dir,
        report,
        report_text,
        split,
        history,
        train_seconds,
        exported.reason,
    )


def _write_checkpoint_and_report(
    run_dir, model, tokenizer, data, report, report_text, y_true, probabilities
) -> None:
    """Writes the Hugging Face checkpoint, label names, report and predictions."""
    from tf_finetune import evaluation

    model.save_pretrained(run_dir)
    tokenizer.save_pretrained(run_dir)
    (run_dir / "labels.txt").write_text("\n".join(data.label_names) + "\n", encoding="utf-8")
    evaluation.write_report(report, report_text, run_dir)
    texts = data.splits[data.eval_split]["text"][:]
    evaluation.write_predictions(
        run_dir / "predictions.csv", texts, y_true, probabilities, data.label_names
    )


def _claim_run_dir(config: FitConfig) -> Path:
    """Returns the run directory, refusing one that already holds files."""
    name = config.run_name or _default_run_name(config)
    if not name or Path(name).name != name or name in (".", ".."):
        raise ConfigError(f"Config key 'run_name' must be a plain folder name. Received: {name!r}.")
    run_dir = Path(config.output_dir).expanduser() / name
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(
            f"Run directory {run_dir} already exists and is not empty. "
            "Choose another --run-name or --output-dir."
        )
    return run_dir


def _default_run_name(config: FitConfig) -> str:
    model = config.model.split(":")[-1].rstrip("/").split("/")[-1]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{model}-{data_stage.describe_source(config)}-{stamp}"
