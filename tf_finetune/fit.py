"""The fine-tuning run: data -> tokens -> tf.data -> model -> fit -> report -> export.

`fit(config)` is what `tf-finetune fit` calls; a notebook can call it too.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path

from tf_finetune import atomic, run_dir
from tf_finetune import data as data_stage
from tf_finetune.config import FitConfig, differences, load_config
from tf_finetune.errors import (
    ConfigError,
    ExportError,
    TfFinetuneError,
    TrainingInterrupted,
    WorkerLost,
    first_line,
    short_reason,
)

CONFIG_NAME = "fit_config.yaml"
STATS_NAME = "training_stats.json"
FINGERPRINT_NAME = "data_fingerprint.json"
CONFUSION_PNG = "confusion_matrix.png"
CURVES_PNG = "training_curves.png"

logger = logging.getLogger(__name__)

# Errors whose own message says what was saved and how to go on.
_SAYS_WHAT_WAS_KEPT = (TrainingInterrupted, WorkerLost)


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
        chief: False for a non-chief worker of a multi-worker run: it trained, and its
            own artefacts were written to a scratch directory that is now removed;
            `run_dir` is the chief's.
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
    chief: bool = True


def fit(
    config: FitConfig, verbose: int = 0, resume: bool = False, overwrite: bool = False
) -> FitResult:
    """Fine-tunes, evaluates and exports the classifier that `config` describes.

    Args:
        config: A resolved `FitConfig` (see `config.load_config`).
        verbose: Keras progress output (0 silent, 1 progress bar, 2 a line per epoch).
        resume: Continue the run in the existing run directory from its last
            checkpoint. Settings that change the model or the data must be the same.
        overwrite: Delete the existing run directory's contents and start again.

    Raises:
        TfFinetuneError: A subclass naming what is wrong with the config, data or model,
            or saying how training stopped (`TrainingInterrupted`, `TrainingDiverged`).
    """
    from tf_finetune import distribution
    from tf_finetune.environment import check_environment

    check_environment()
    # First: the devices and the cluster must be set up before TensorFlow starts.
    strategy = distribution.select_strategy(config.strategy, config.devices)
    if config.run_name is None and distribution.strategy_name(strategy) == "multi_worker":
        raise ConfigError(
            "A multi-worker run needs --run-name: every worker must name the same run "
            "directory, and the default name holds each worker's own start time."
        )
    path = _run_dir_path(config)
    if distribution.is_chief(strategy):
        run = run_dir.claim(path, resume=resume, overwrite=overwrite)
    else:
        run = run_dir.scratch(path, resume=resume)
    try:
        result = _run(config, run, strategy, verbose)
    except OSError as error:
        note = run.abandon()
        raise ExportError(
            f"Cannot write to {run.path}: {short_reason(error)}. {note}".rstrip()
        ) from None
    except TfFinetuneError as error:
        # A run that stopped before training (bad data, a missing model) leaves the
        # run directory as it found it; one that trained keeps its checkpoints.
        note = run.abandon()
        if note and not isinstance(error, _SAYS_WHAT_WAS_KEPT):
            error.args = (f"{first_line(error)}. {note}",)
        raise
    except BaseException:
        run.abandon()
        raise
    run.release()
    return result


def _run(config: FitConfig, run: run_dir.RunDirectory, strategy, verbose: int) -> FitResult:
    import tensorflow as tf
    import tf_keras

    from tf_finetune import (
        best_epoch,
        checkpointing,
        distribution,
        evaluation,
        export,
        freezing,
        losses,
        modeling,
        optimization,
        schedules,
        summaries,
        tf_data,
        tokenization,
        training,
    )

    stored = load_config(run.source / CONFIG_NAME) if run.resuming else None
    # Data order, initialisation and dropout all follow the seed.
    tf_keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    model_path = modeling.resolve_model_path(config.model, config.allow_pickle_weights)
    data = data_stage.load_data(config)
    atomic.fault_point("data")
    model_config = modeling.load_model_config(model_path, data.label_names)
    tokenizer = tokenization.load_tokenizer(model_path)
    tokens = tokenization.tokenize(
        data.splits,
        tokenizer,
        config.max_length,
        config.padding,
        tokenization.length_limit(tokenizer, model_config),
    )

    global_batch = config.batch_size * strategy.num_replicas_in_sync
    accumulation = config.gradient_accumulation_steps
    logger.info(
        "Global batch %d: %d per replica x %d replica(s)%s.",
        global_batch,
        config.batch_size,
        strategy.num_replicas_in_sync,
        f"; {global_batch * accumulation} per update ({accumulation} batches accumulated)"
        if accumulation > 1
        else "",
    )
    steps_per_epoch = tf_data.batches_per_pass(len(tokens.splits["train"]), global_batch)
    updates = schedules.optimizer_steps(steps_per_epoch, config.epochs, accumulation)
    weights = losses.class_weights(
        config.class_weights, data.label_names, tokens.splits["train"]["labels"][:]
    )
    if weights is not None:
        logger.info(
            "Class weights: %s.",
            ", ".join(f"{n} {w:.3g}" for n, w in zip(data.label_names, weights, strict=True)),
        )
    pad_values = tf_data.pad_values(tokenizer)
    pad_multiple = distribution.resolve_pad_multiple(config.pad_to_multiple_of)
    precision = distribution.resolve_precision(config.mixed_precision)
    resolved = dataclasses.replace(
        config,
        max_length=tokens.max_length,
        pad_to_multiple_of=pad_multiple,
        mixed_precision=precision,
        strategy=distribution.strategy_name(strategy),
        output_dir=str(run.source.parent),
        run_name=run.source.name,
    )
    fingerprint = {
        "labels": data.label_names,
        "global_batch": global_batch,
        **{split: tf_data.fingerprint(tokens.splits[split]) for split in tokens.splits},
    }
    if stored is not None:
        _check_resumable(run.source, stored, resolved, fingerprint)

    def batches(split, epochs=1, seed=None, first_step=0):
        if config.padding == "max_length":
            return tf_data.collated_batches(
                tokens.splits[split],
                tokens.input_names,
                global_batch,
                epochs=epochs,
                seed=seed,
                first_step=first_step,
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
            first_step=first_step,
        )

    # Layers take the precision policy when they are built.
    with distribution.precision_policy(precision), strategy.scope():
        model = modeling.build_model(model_path, model_config, config.allow_pickle_weights)
        modeling.compile_model(
            model,
            schedules.learning_rate(config, updates),
            config.jit_compile,
            weight_decay=config.weight_decay or 0.0,
            clip_norm=config.clip_norm,
            accumulation_steps=accumulation,
            class_weights=weights,
            label_smoothing=config.label_smoothing,
            freeze_base=config.freeze_base,
        )

    checkpointer = checkpointing.Checkpointer(
        run.path / run_dir.CHECKPOINT_DIR, model, restore_from=run.source / run_dir.CHECKPOINT_DIR
    )
    start = checkpointer.restore() if run.resuming else checkpointing.ResumePoint.start()
    # Every check that can fail before training has passed: only now may an
    # --overwrite move the previous run aside, and only a checkpoint deletes it.
    run.begin_training()
    checkpointer.after_save.append(run.commit)
    atomic.write_text(run.path / CONFIG_NAME, resolved.to_yaml())
    atomic.write_text(run.path / FINGERPRINT_NAME, json.dumps(fingerprint) + "\n")
    log_dir = run.path / "logs"
    summaries.write_hparams(log_dir, resolved, global_batch)
    validation = batches("validation")
    if not _finished(config, start.epoch, start.history):
        train_batches = batches("train", config.epochs, config.seed, start.global_step)
        step_summaries = summaries.StepSummaries(
            log_dir, config.log_steps, train_batches.steps, global_batch
        )
        validation_summaries = summaries.ValidationSummaries(
            validation,
            tokens.splits["validation"]["labels"][:],
            data.splits["validation"]["text"][:],
            data.label_names,
            log_dir,
        )
        callbacks = [step_summaries, validation_summaries]
        checkpointer.after_save += [step_summaries.flush, validation_summaries.flush]
        if config.restore_best:
            keeper = best_epoch.BestEpoch(
                checkpointer, config.monitor, config.early_stopping_patience, start.history
            )
            callbacks.append(keeper)  # after the callback that adds val_macro_f1
            checkpointer.after_save.append(keeper.flush)
        if accumulation > 1:
            callbacks.append(optimization.AccumulationGroups(train_batches.steps))
        if config.unfreeze_after is not None:
            retrace = modeling.use_xla_train_step if config.jit_compile else None
            callbacks.append(freezing.UnfreezeBase(config.unfreeze_after, retrace))
        trained = training.train(
            model,
            train_batches,
            validation,
            config.epochs,
            log_dir,
            checkpointer,
            config.checkpoint_steps,
            start,
            verbose,
            extra_callbacks=callbacks,
        )
        history, stats = trained.history, trained.stats
        stats["resumed_from_step"] = start.global_step
        stats["optimizer_steps"] = int(model.optimizer.iterations.numpy())
        stats["parameters"] = int(model.count_params())
        atomic.write_text(run.path / STATS_NAME, json.dumps(stats, indent=2) + "\n")
    else:  # training had finished; the report or the export had not
        history = start.history
        stats = json.loads((run.source / STATS_NAME).read_text(encoding="utf-8"))

    if config.restore_best:
        chosen = best_epoch.selection(history, config.monitor, config.epochs)
        best_epoch.restore(checkpointer, chosen)
    else:
        chosen = best_epoch.last_epoch(history)

    split = data.eval_split
    evaluated = validation if split == "validation" else batches(split)
    probabilities = evaluation.predict_probabilities(model, evaluated)
    y_true = tokens.splits[split]["labels"][:]
    report = evaluation.build_report(y_true, probabilities, data.label_names)
    report["model_epoch"] = dataclasses.asdict(chosen)
    report_text = evaluation.format_report(y_true, probabilities, data.label_names) + (
        f"\n{chosen.describe()}\nPictures in {run.source}: {CONFUSION_PNG} ({split} split) and "
        f"{CURVES_PNG} (loss and accuracy per epoch).\n"
    )
    logger.info(
        "%s accuracy %.4f, macro F1 %.4f.",
        split,
        report["accuracy"],
        report["macro avg"]["f1-score"],
    )

    try:
        _write_checkpoint_and_report(
            run.path, model, tokenizer, data, report, report_text, y_true, probabilities, history
        )
        exported = export.export_saved_model(
            model,
            data.label_names,
            tokens.input_names,
            run.path,
            tokenizer=tokenizer,
            max_length=tokens.max_length,
            text_pair=data.has_text_pair,
        )
    except (OSError, tf.errors.OpError) as error:
        # tf.errors.OpError: TensorFlow's file system reports a full disk as
        # ResourceExhaustedError, a read-only one as PermissionDeniedError, ...
        raise ExportError(
            f"Cannot write the run's artefacts to {run.path}: {short_reason(error)}. "
            "Nothing written before was changed; fix the cause (disk space?)."
        ) from None
    # The export is complete: the training checkpoints are no longer needed.
    shutil.rmtree(run.path / run_dir.CHECKPOINT_DIR, ignore_errors=True)
    return FitResult(
        run.source,
        exported.path,
        log_dir,
        report,
        report_text,
        split,
        history,
        stats,
        exported.reason,
        chief=not run.scratch,
    )


def _finished(config: FitConfig, epoch: int, history: dict) -> bool:
    """Whether training is over: every epoch done, or early stopping stopped it."""
    from tf_finetune import best_epoch

    values = history.get(config.monitor, [])
    stopped = best_epoch.patience_exhausted(values, config.monitor, config.early_stopping_patience)
    return epoch >= config.epochs or stopped


def _check_resumable(path: Path, stored: FitConfig, resolved: FitConfig, fingerprint) -> None:
    """Refuses to resume a run whose model or data settings have changed."""
    changed = differences(stored, resolved)
    previous_path = path / FINGERPRINT_NAME
    if previous_path.is_file():
        previous = json.loads(previous_path.read_text(encoding="utf-8"))
        changed += [
            _describe_change(key, previous.get(key), value)
            for key, value in fingerprint.items()
            if previous.get(key) != value
        ]
    if changed:
        raise ConfigError(
            f"Cannot resume {path}: settings that change the model or data differ ("
            + "; ".join(changed)
            + f"). Resume with --config {path / CONFIG_NAME}, or start a new run."
        )


def _describe_change(key: str, before, after) -> str:
    if key == "labels":
        return f"labels: {before} -> {after}"
    if key == "global_batch":
        return f"global batch (batch_size x replicas): {before} -> {after}"
    return f"{key} data changed"


def _write_checkpoint_and_report(
    run_path, model, tokenizer, data, report, report_text, y_true, probabilities, history
) -> None:
    """Writes the Hugging Face checkpoint, label names, report, predictions and pictures.

    Each file is written into a temporary folder first, then renamed into place.
    """
    from tf_finetune import evaluation, plots

    with atomic.staged_files(run_path) as staging:
        atomic.fault_point("report")
        plots.confusion_matrix_png(
            report["confusion_matrix"], data.label_names, staging / CONFUSION_PNG
        )
        plots.training_curves_png(history, staging / CURVES_PNG)
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "labels.txt").write_text("\n".join(data.label_names) + "\n", encoding="utf-8")
        evaluation.write_report(report, report_text, staging)
        texts = data.splits[data.eval_split]["text"][:]
        evaluation.write_predictions(
            staging / "predictions.csv", texts, y_true, probabilities, data.label_names
        )


def _run_dir_path(config: FitConfig) -> Path:
    """Returns the run directory that `config` names."""
    name = config.run_name or _default_run_name(config)
    if not name or Path(name).name != name or name in (".", ".."):
        raise ConfigError(f"Config key 'run_name' must be a plain folder name. Received: {name!r}.")
    return Path(config.output_dir).expanduser() / name


def _default_run_name(config: FitConfig) -> str:
    model = config.model.split(":")[-1].rstrip("/").split("/")[-1]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{model}-{data_stage.describe_source(config)}-{stamp}"
