"""The fine-tuning run: data -> tokens -> tf.data -> model -> fit -> report -> export.

`fit(config)` is what `tf-finetune fit` calls; a notebook can call it too.
"""

from __future__ import annotations

import dataclasses
import json
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
        history: Keras metrics per epoch, with speed figures.
        stats: Speed figures of training (see `throughput.summarize`), also written to
            `training_stats.json`.
    """

    run_dir: Path
    saved_model_dir: Path
    log_dir: Path
    report: dict
    report_text: str
    eval_split: str
    history: dict
    stats: dict
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
    pad_values = tf_data.pad_values(tokenizer)
    pad_multiple = distribution.resolve_pad_multiple(config.pad_to_multiple_of)
    precision = distribution.resolve_precision(config.mixed_precision)

    def batches(split, epochs=1, seed=None):
        if config.padding == "max_length":
            return tf_data.collated_batches(
                tokens.splits[split], tokens.input_names, global_batch, shuffle=seed is not None
            )
        return tf_data.grouped_batches(
            tokens.splits[split],
            tokens.input_names,
            pad_values,
            global_batch,
            # Evaluation order does not matter (predictions are put back in split
            # order), so evaluation always groups.
            group=config.padding == "grouped" or seed is None,
            epochs=epochs,
            seed=seed,
            pad_to_multiple_of=pad_multiple,
            max_length=tokens.max_length,
        )

    # Layers take the precision policy when they are built.
    with distribution.precision_policy(precision), strategy.scope():
        model = modeling.build_model(model_path, model_config)
        modeling.compile_model(model, config.learning_rate)

    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = dataclasses.replace(
        config,
        max_length=tokens.max_length,
        pad_to_multiple_of=pad_multiple,
        mixed_precision=precision,
    )
    resolved.write_yaml(run_dir / "fit_config.yaml")
    log_dir = run_dir / "logs"
    validation = batches("validation")
    trained = training.train(
        model,
        batches("train", config.epochs, config.seed),
        validation,
        config.epochs,
        log_dir,
        verbose,
    )
    (run_dir / "training_stats.json").write_text(
        json.dumps(trained.stats, indent=2) + "\n", encoding="utf-8"
    )

    split = data.eval_split
    evaluated = validation if split == "validation" else batches(split)
    probabilities = evaluation.predict_probabilities(model, evaluated)
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
        trained.history,
        trained.stats,
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
