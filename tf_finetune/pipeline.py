"""The fine-tuning run, as named phases.

`fit(config)` is what `tf-finetune fit` calls; a notebook can call it too. It claims
the run directory, then runs the phases, each a function that returns what the next
one needs:

    load_inputs     data, tokenizer and tokens (`max_length: auto` measured here)
    resolve_config  every `auto` replaced; only this config is used from here on
    plan_batches    the batch recipe, global batch, updates, class weights, fingerprint
    build_model     the compiled classifier under the strategy and precision policy
    train_model     training (or its resumption), then the chosen epoch's weights
    evaluate        the report on the test split (validation without one)
    (write)         the Hugging Face checkpoint, report, predictions and pictures
    export_model    the SavedModel
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path

from tf_finetune.config import FitConfig, differences, load_config
from tf_finetune.data import loading
from tf_finetune.errors import (
    ConfigError,
    ExportError,
    TfFinetuneError,
    TrainingInterrupted,
    WorkerLost,
    first_line,
    short_reason,
)
from tf_finetune.runtime import atomic, run_dir
from tf_finetune.runtime.clock import PhaseClock

CONFIG_NAME = "fit_config.yaml"
STATS_NAME = "training_stats.json"
FINGERPRINT_NAME = "data_fingerprint.json"
LOG_DIR = "logs"
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
        token_ids_only_reason: Why `serving_default` takes token ids instead of raw text,
            or None when it takes raw text.
        log_dir: TensorBoard logs.
        report: scikit-learn's report dict plus `confusion_matrix` and `labels`.
        report_text: The report as text.
        eval_split: The split the report scores ("test", or "validation" without test).
        history: Keras metrics per epoch, with speed figures.
        stats: Speed figures of training (see `throughput.summarize`) and the seconds
            of each phase of the run (`phase_seconds`, see `runtime.clock`), also
            written to `training_stats.json`.
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
    token_ids_only_reason: str | None = None
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
        overwrite: Replace the run in the existing run directory. The old run stays
            until the new one has passed every check and written its first
            checkpoint (see `runtime.run_dir`).

    Raises:
        TfFinetuneError: A subclass naming what is wrong with the config, data or model,
            or saying how training stopped (`TrainingInterrupted`, `TrainingDiverged`).
    """
    from tf_finetune.runtime import distribution
    from tf_finetune.runtime.environment import check_environment

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
        with _determinism(config.deterministic):
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
    """The phases of a run, each a function that returns what the next one needs."""
    from tf_finetune.modeling import models
    from tf_finetune.training import efficiency

    clock = PhaseClock.for_run()
    _seed(config)
    inputs = load_inputs(config, clock)
    resolved = resolve_config(config, inputs, strategy, run)
    stored = load_config(run.source / CONFIG_NAME) if run.resuming else None
    if stored is not None:
        stored, resolved = _as_begun(config, stored, resolved)
    plan = plan_batches(resolved, inputs, strategy)
    if stored is not None:
        _check_resumable(run.source, stored, resolved, plan.fingerprint)
    clock.lap("plan")
    model = build_model(resolved, inputs, plan, strategy)
    efficiency.probe_before_training(resolved.mixed_precision)
    clock.lap("build")
    trained = train_model(resolved, run, model, inputs, plan, verbose)
    clock.split_training(trained.stats)
    # Scored and served at full precision, whatever precision trained it.
    forward = trained.forward
    full = forward.model if forward is not None else models.float32_copy(model)
    evaluated = evaluate(resolved, forward or full, inputs, plan, trained)
    _write_checkpoint_and_report(run.path, model, inputs, evaluated, trained.history)
    clock.lap("report")
    exported = export_model(run.path, full, inputs, evaluated.thresholds, forward)
    clock.lap("export")
    stats = trained.stats | {"phase_seconds": clock.seconds}
    atomic.write_text(run.path / STATS_NAME, json.dumps(stats, indent=2) + "\n")
    # The export is complete: the training checkpoints are no longer needed.
    shutil.rmtree(run.path / run_dir.CHECKPOINT_DIR, ignore_errors=True)
    return FitResult(
        run_dir=run.source,
        saved_model_dir=exported.path,
        log_dir=run.path / LOG_DIR,
        report=evaluated.report,
        report_text=evaluated.text,
        eval_split=evaluated.split,
        history=trained.history,
        stats=stats,
        token_ids_only_reason=exported.reason,
        chief=not run.scratch,
    )


def _seed(config: FitConfig) -> None:
    """Seeds Python's, NumPy's and TensorFlow's global generators, as Keras does.

    Data order, initialisation and dropout all follow the seed.
    """
    import tf_keras

    tf_keras.utils.set_random_seed(config.seed)


@contextlib.contextmanager
def _determinism(enabled: bool):
    """Turns on TensorFlow's op determinism for the run, and back off after it."""
    if not enabled:
        yield
        return
    from tensorflow.python.framework import config as tf_config

    was_enabled = tf_config.is_op_determinism_enabled()
    tf_config.enable_op_determinism()
    try:
        yield
    finally:
        if not was_enabled:
            tf_config.disable_op_determinism()


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What the run learns from: data, tokenizer and tokens (the load + tokenize phase).

    Attributes:
        data: The canonical splits and label names.
        tokenizer: The checkpoint's fast tokenizer.
        tokens: The tokenized splits.
        model_path: The checkpoint directory.
        model_config: The checkpoint's config, with the run's labels.
    """

    data: loading.TextClassificationData
    tokenizer: object
    tokens: object
    model_path: str
    model_config: object


def load_inputs(config: FitConfig, clock: PhaseClock | None = None) -> Inputs:
    """Loads the data and the checkpoint's tokenizer, and tokenizes every split.

    `clock`, if given, gets a lap for each: `load`, then `tokenize`.
    """
    from tf_finetune.modeling import models

    clock = clock or PhaseClock()
    model_path = models.resolve_model_path(config.model, config.allow_pickle_weights)
    data = loading.load_data(config)
    atomic.fault_point("data")
    clock.lap("load")
    inputs = tokenize_inputs(config, data, model_path)
    clock.lap("tokenize")
    return inputs


def tokenize_inputs(config: FitConfig, data, model_path: str) -> Inputs:
    """Tokenizes the loaded splits with the checkpoint's tokenizer (the token cache's, if there)."""
    import pyarrow

    from tf_finetune.data import tokenization
    from tf_finetune.modeling import models

    model_config = models.load_model_config(model_path, data.label_names, data.multi_label)
    tokenizer = tokenization.load_tokenizer(model_path)
    tokens = tokenization.tokenize(
        data.splits,
        tokenizer,
        config.max_length,
        config.padding,
        tokenization.length_limit(tokenizer, model_config),
        tokenization.cache_directory(),
        config.truncation,
        windows=config.long_text == "windows",
        stride=config.stride,
        max_windows=config.max_windows,
    )
    # Later stages use the evaluation splits' texts only: the training texts go now.
    train = data.splits["train"]
    data.splits["train"] = train.remove_columns(
        [c for c in ("text", "text_pair") if c in train.column_names]
    )
    del train
    # Arrow's allocator keeps freed memory for reuse by Arrow alone; hand the texts'
    # (a gigabyte at yelp_review_full's size) back, for the model and TensorFlow.
    pyarrow.default_memory_pool().release_unused()
    return Inputs(
        data=data,
        tokenizer=tokenizer,
        tokens=tokens,
        model_path=model_path,
        model_config=model_config,
    )


def resolve_config(config: FitConfig, inputs: Inputs, strategy, run) -> FitConfig:
    """Returns `config` with every `auto` replaced by what the run uses, and its folder."""
    from tf_finetune.modeling import models
    from tf_finetune.runtime import distribution

    if config.tune_thresholds and not inputs.data.multi_label:
        raise ConfigError(
            "tune_thresholds chooses multi-label decision thresholds, and this data has "
            "one label per example. Leave it out, or give multi-label data."
        )
    return dataclasses.replace(
        config,
        max_length=inputs.tokens.max_length,
        problem="multi_label" if inputs.data.multi_label else "single_label",
        truncation=inputs.tokens.truncation,
        stride=_stride(config, inputs),
        pad_to_multiple_of=distribution.resolve_pad_multiple(config.pad_to_multiple_of),
        length_buckets=_length_buckets(config),
        mixed_precision=distribution.resolve_precision(
            config.mixed_precision, models.hidden_size(inputs.model_config)
        ),
        strategy=distribution.strategy_name(strategy),
        output_dir=str(run.source.parent),
        run_name=run.source.name,
    )


def _stride(config: FitConfig, inputs: Inputs) -> int:
    """The windows' stride: the one used, or (cutting texts) the one windows would use."""
    from tf_finetune.data import long_text

    if inputs.tokens.stride is not None:
        return inputs.tokens.stride
    if config.stride != "auto":
        return config.stride
    specials = inputs.tokenizer.num_special_tokens_to_add(pair=False)
    return long_text.default_stride(inputs.tokens.max_length - specials)


# Batch lengths under XLA when `length_buckets` is "auto": each is compiled once, so
# few, but enough that padding stays low (the demo's quotes: 10% padding at 8 buckets,
# 2% with each batch padded to its own longest).
_XLA_LENGTH_BUCKETS = 8


def _length_buckets(config: FitConfig) -> int:
    if config.length_buckets != "auto":
        return config.length_buckets
    return _XLA_LENGTH_BUCKETS if config.jit_compile else 0


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    """How the run is fed (the batches phase).

    Attributes:
        recipe: Turns a tokenized split into batches.
        global_batch: Examples per step, over every replica.
        updates: Optimizer updates of the whole run (for the learning-rate schedule).
        class_weights: Loss weight per class id, or None.
        fingerprint: What a resumed run must find unchanged: labels, global batch and
            each split's digest (texts, labels, tokenizer, length cut).
    """

    recipe: object
    global_batch: int
    updates: int
    class_weights: list[float] | None
    fingerprint: dict


def plan_batches(config: FitConfig, inputs: Inputs, strategy) -> BatchPlan:
    """Plans the global batch, the number of updates and the class weights."""
    from tf_finetune.data import batching
    from tf_finetune.modeling import losses, schedules

    splits, names = inputs.tokens.splits, inputs.data.label_names
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
    steps_per_epoch = batching.batches_per_pass(len(splits["train"]), global_batch)
    weights = losses.class_weights(
        config.class_weights, names, batching.label_array(splits["train"])
    )
    if weights is not None:
        described = ", ".join(f"{n} {w:.3g}" for n, w in zip(names, weights, strict=True))
        logger.info("Class weights: %s.", described)
    recipe = batching.BatchRecipe(
        padding=config.padding,
        input_names=inputs.tokens.input_names,
        pad_values=batching.pad_values(inputs.tokenizer),
        global_batch=global_batch,
        max_length=config.max_length,
        pad_to_multiple_of=config.pad_to_multiple_of,
        length_buckets=config.length_buckets,
    )
    fingerprint = {
        "labels": names,
        "global_batch": global_batch,
        **inputs.tokens.digests,
    }
    return BatchPlan(
        recipe=recipe,
        global_batch=global_batch,
        updates=schedules.optimizer_steps(steps_per_epoch, config.epochs, accumulation),
        class_weights=weights,
        fingerprint=fingerprint,
    )


def build_model(config: FitConfig, inputs: Inputs, plan: BatchPlan, strategy):
    """Builds and compiles the classifier under the strategy and precision policy."""
    from tf_finetune.modeling import models, schedules
    from tf_finetune.runtime import distribution

    # Layers take the precision policy when they are built.
    with distribution.precision_policy(config.mixed_precision), strategy.scope():
        model = models.build_model(
            inputs.model_path, inputs.model_config, config.allow_pickle_weights
        )
        if model.compute_dtype == "bfloat16" and distribution.device_type() == "CPU":
            models.activations_in_float32(model)
        models.compile_model(
            model,
            schedules.learning_rate(config, plan.updates),
            config.jit_compile,
            weight_decay=config.weight_decay or 0.0,
            clip_norm=config.clip_norm,
            accumulation_steps=config.gradient_accumulation_steps,
            class_weights=plan.class_weights,
            label_smoothing=config.label_smoothing,
            freeze_base=config.freeze_base,
            multi_label=inputs.data.multi_label,
        )
    return model


@dataclasses.dataclass(frozen=True)
class Trained:
    """What the train phase leaves: its history and speed, and the epoch to keep.

    Attributes:
        history: Keras metrics per epoch, with speed figures.
        stats: Speed figures of training (see `throughput.summarize`).
        chosen: The epoch whose weights the model now holds.
        validation: The validation batches, reused for the report when there is no test.
        float32_scores: Validation probabilities of the epochs scored in float32 this
            process (epoch index -> per-text probabilities), reused by the report.
        forward: The traced forward pass validation scored with (`forward.Forward`),
            of a float32 model holding the chosen epoch's weights, or None.
    """

    history: dict
    stats: dict
    chosen: object
    validation: object
    float32_scores: dict = dataclasses.field(default_factory=dict)
    forward: object = None


def train_model(config, run, model, inputs: Inputs, plan: BatchPlan, verbose: int) -> Trained:
    """Trains (or continues) the model, then loads the chosen epoch's weights into it.

    A resumed run whose training had finished goes straight to choosing the epoch.
    """
    from tf_finetune.data import tokenization
    from tf_finetune.training import best_epoch, checkpointing, efficiency, loop, summaries

    checkpointer = checkpointing.Checkpointer(
        run.path / run_dir.CHECKPOINT_DIR, model, restore_from=run.source / run_dir.CHECKPOINT_DIR
    )
    start = checkpointer.restore() if run.resuming else checkpointing.ResumePoint.start()
    # Every check that can fail before training has passed: only now may an
    # --overwrite move the previous run aside, and only a checkpoint deletes it.
    run.begin_training()
    checkpointer.after_save.append(run.commit)
    atomic.write_text(run.path / CONFIG_NAME, config.to_yaml())
    atomic.write_text(run.path / FINGERPRINT_NAME, json.dumps(plan.fingerprint) + "\n")
    log_dir = run.path / LOG_DIR
    summaries.write_hparams(log_dir, config, plan.global_batch)
    validation = plan.recipe.batches(inputs.tokens.splits["validation"])
    forward, float32_scores = None, {}
    if _finished(config, start.epoch, start.history):
        history = start.history
        stats = json.loads((run.source / STATS_NAME).read_text(encoding="utf-8"))
    else:
        forward = _scoring_forward(config, model, inputs.tokens.input_names)
        train_batches = plan.recipe.batches(
            inputs.tokens.splits["train"], config.epochs, config.seed, start.global_step
        )
        split = loop.ValidationSplit(
            batches=validation,
            labels=inputs.data.splits["validation"]["labels"][:],
            texts=inputs.data.splits["validation"]["text"][:],
            label_names=inputs.data.label_names,
            documents=tokenization.documents(inputs.tokens.splits["validation"]),
        )
        callbacks = loop.run_callbacks(
            config, train_batches, plan.global_batch, checkpointer, log_dir, start
        )
        result = loop.train(
            model,
            train_batches,
            split,
            config.epochs,
            log_dir,
            checkpointer,
            config.checkpoint_steps,
            start,
            verbose,
            extra_callbacks=callbacks,
            compiles_per_shape=config.jit_compile,
            forward=forward,
        )
        history, float32_scores = result.history, result.float32_scores
        stats = result.stats | {
            "resumed_from_step": start.global_step,
            "optimizer_steps": int(model.optimizer.iterations.numpy()),
            "parameters": int(model.count_params()),
        }
        replicas = plan.global_batch // config.batch_size
        stats |= efficiency.figures(stats, inputs.model_config, config.mixed_precision, replicas)
        atomic.write_text(run.path / STATS_NAME, json.dumps(stats, indent=2) + "\n")
    if config.restore_best:
        chosen = best_epoch.selection(history, config.monitor, config.epochs)
        best_epoch.restore(checkpointer, chosen)
    else:
        chosen = best_epoch.last_epoch(history)
    copy = forward.model if forward is not None else model
    if copy is not model and chosen.epoch - 1 != max(float32_scores, default=None):
        copy.set_weights(model.get_weights())  # it holds the last scored epoch's
    return Trained(
        history=history,
        stats=stats,
        chosen=chosen,
        validation=validation,
        float32_scores=float32_scores,
        forward=forward,
    )


def _scoring_forward(config, model, input_names):
    """The traced forward pass that scores validation, the report and the export, or None.

    On one device without XLA, validation calls one trace of the model each epoch
    (`forward.Forward`) instead of Keras' `predict`, and the report and the export
    reuse it. A model training in bfloat16 on a CPU is scored through a float32 copy:
    there bfloat16 predicts only ~5% faster (rotten_tomatoes validation, MiniLM: 5.1 s
    against 5.4 s), so each epoch is scored at the precision its report and export
    use, and the report reuses the chosen epoch's scores instead of predicting its
    split again. Several replicas and XLA keep Keras' `predict`, and so does float16
    on a GPU, which predicts several times faster than float32 there.
    """
    from tf_finetune.modeling import models
    from tf_finetune.modeling.forward import Forward
    from tf_finetune.runtime import distribution

    single = model.distribute_strategy.num_replicas_in_sync == 1
    if config.jit_compile or not single:
        return None
    if model.compute_dtype == "float32":
        return Forward(model, input_names)
    if distribution.device_type() == "GPU":
        return None
    return Forward(models.float32_copy(model), input_names)


@dataclasses.dataclass(frozen=True)
class Evaluated:
    """The report phase's result on the evaluation split.

    Attributes:
        split: "test", or "validation" when there is no test split.
        report: scikit-learn's report dict plus `confusion_matrix`, `labels` and
            `model_epoch`.
        text: The report as text, naming the epoch and the pictures.
        y_true: The split's label ids (multi-label: 0/1 rows).
        probabilities: The model's class probabilities, in split order.
        thresholds: Multi-label: each label's decision threshold when tuned, else None.
    """

    split: str
    report: dict
    text: str
    y_true: object
    probabilities: object
    thresholds: list[float] | None = None


def evaluate(config, model, inputs: Inputs, plan: BatchPlan, trained: Trained) -> Evaluated:
    """Scores the chosen epoch's model on the test split (validation without one).

    With windows, a text's probabilities are the mean of its windows' (multi-label:
    their maximum). A multi-label run with `tune_thresholds` chooses each label's
    threshold on validation first.
    """
    import numpy as np

    from tf_finetune.data import tokenization
    from tf_finetune.evaluation import multi_label, scoring

    multi, names = inputs.data.multi_label, inputs.data.label_names

    def scored(split, batches):
        tokens = inputs.tokens.splits[split]
        probabilities = scoring.predict_probabilities(model, batches, multi)
        return scoring.per_text(probabilities, tokenization.documents(tokens), multi)

    def validation_scores():
        # Scored in float32 after the chosen epoch, by this process: as this would score it.
        kept = trained.float32_scores.get(trained.chosen.epoch - 1)
        return kept if kept is not None else scored("validation", trained.validation)

    split = inputs.data.eval_split
    if split == "validation":
        probabilities = validation_scores()
    else:
        probabilities = scored(split, plan.recipe.batches(inputs.tokens.splits[split]))
    y_true = np.asarray(inputs.data.splits[split]["labels"][:])
    thresholds = None
    if config.tune_thresholds:
        held = probabilities if split == "validation" else validation_scores()
        truth = np.asarray(inputs.data.splits["validation"]["labels"][:])
        thresholds = multi_label.tune_thresholds(truth, held)
        logger.info(
            "Thresholds tuned on validation: %s.",
            ", ".join(f"{n} {t:.3f}" for n, t in zip(names, thresholds, strict=True)),
        )
    report = scoring.build_report(y_true, probabilities, names, thresholds)
    report["model_epoch"] = dataclasses.asdict(trained.chosen)
    report["truncated"] = {
        "texts": inputs.tokens.truncated[split],
        "of": len(y_true),
        "max_length": inputs.tokens.max_length,
        "truncation": inputs.tokens.truncation,
    }
    if inputs.tokens.stride is not None:
        report["truncated"] |= {"truncation": "windows", "stride": inputs.tokens.stride}
    text = scoring.format_report(y_true, probabilities, names, thresholds) + (
        f"\n{scoring.describe_truncated(report['truncated'], split)}"
        f"\n{trained.chosen.describe()}\nPictures in {Path(config.output_dir) / config.run_name}: "
        f"{CONFUSION_PNG} ({split} split) and {CURVES_PNG} (loss and accuracy per epoch).\n"
    )
    logger.info(
        "%s accuracy %.4f, macro F1 %.4f.",
        split,
        report["accuracy"],
        report["macro avg"]["f1-score"],
    )
    return Evaluated(
        split=split,
        report=report,
        text=text,
        y_true=y_true,
        probabilities=probabilities,
        thresholds=thresholds,
    )


def export_model(run_path: Path, model, inputs: Inputs, thresholds=None, forward=None):
    """Exports the SavedModel as the run directory's next version (through `forward`,
    the model's traced forward pass, when there is one)."""
    from tf_finetune.export import saved_model

    return saved_model.export_saved_model(
        model,
        inputs.data.label_names,
        inputs.tokens.input_names,
        run_path,
        tokenizer=inputs.tokenizer,
        max_length=inputs.tokens.max_length,
        text_pair=inputs.data.has_text_pair,
        truncation=inputs.tokens.truncation,
        stride=inputs.tokens.stride,
        multi_label=inputs.data.multi_label,
        thresholds=thresholds,
        forward=forward,
    )


def _finished(config: FitConfig, epoch: int, history: dict) -> bool:
    """Whether training is over: every epoch done, or early stopping stopped it."""
    from tf_finetune.training import best_epoch

    values = history.get(config.monitor, [])
    stopped = best_epoch.patience_exhausted(values, config.monitor, config.early_stopping_patience)
    return epoch >= config.epochs or stopped


# Settings whose "auto" a newer tf_finetune may resolve otherwise (bfloat16 on CPUs that
# have it came after float32 everywhere): a resumed run keeps what it began with.
_KEPT_ON_RESUME = ("mixed_precision", "length_buckets")


def _as_begun(config: FitConfig, stored: FitConfig, resolved: FitConfig):
    """Returns the stored and the resolved settings, the `auto` choices as the run began.

    A run begun before `length_buckets` existed stored none (read back as "auto"): it
    padded each batch to its own longest. One begun before `truncation` cut texts on
    the tokenizer's `truncation_side`, as "auto" still does.
    """
    if stored.length_buckets == "auto":
        stored = dataclasses.replace(stored, length_buckets=0)
    if stored.truncation == "auto":  # begun before `truncation`: cut on the tokenizer's side
        stored = dataclasses.replace(stored, truncation=resolved.truncation)
    if stored.problem == "auto":  # begun before multi-label data: single-label
        stored = dataclasses.replace(stored, problem=resolved.problem)
    if stored.stride == "auto" and stored.long_text == "truncate":  # begun before windows
        stored = dataclasses.replace(stored, stride=resolved.stride)
    kept = {
        name: getattr(stored, name)
        for name in _KEPT_ON_RESUME
        if getattr(config, name) == "auto" and getattr(resolved, name) != getattr(stored, name)
    }
    if kept:
        logger.info(
            "Resuming with the settings the run began with: %s.",
            ", ".join(f"{name} {value}" for name, value in kept.items()),
        )
    return stored, dataclasses.replace(resolved, **kept)


def _check_resumable(path: Path, stored: FitConfig, resolved: FitConfig, fingerprint) -> None:
    """Refuses to resume a run whose model or data settings have changed."""
    changed = differences(stored, resolved)
    previous_path = path / FINGERPRINT_NAME
    if previous_path.is_file():
        previous = json.loads(previous_path.read_text(encoding="utf-8"))
        older = [
            key for key, value in fingerprint.items() if _older_digest(previous.get(key), value)
        ]
        if older:
            logger.warning(
                "The %s data of %s was fingerprinted by an earlier tf_finetune, so it cannot "
                "be checked: resume only if the data files are the ones the run began with.",
                ", ".join(older),
                path,
            )
        changed += [
            _describe_change(key, previous.get(key), value)
            for key, value in fingerprint.items()
            if previous.get(key) != value and key not in older
        ]
    if changed:
        raise ConfigError(
            f"Cannot resume {path}: settings that change the model or data differ ("
            + "; ".join(changed)
            + f"). Resume with --config {path / CONFIG_NAME}, or start a new run."
        )


def _older_digest(before, after) -> bool:
    """Whether `before` is a split digest of the format before the token cache's (64 hex
    digits of the token ids, where a digest is now 32 of the texts)."""
    return isinstance(before, str) and isinstance(after, str) and len(before) == 64 != len(after)


def _describe_change(key: str, before, after) -> str:
    if key == "labels":
        return f"labels: {before} -> {after}"
    if key == "global_batch":
        return f"global batch (batch_size x replicas): {before} -> {after}"
    return f"{key} data changed"


def _write_checkpoint_and_report(
    run_path: Path, model, inputs: Inputs, evaluated: Evaluated, history: dict
) -> None:
    """Writes the Hugging Face checkpoint, label names, report, predictions and pictures.

    Each file is written into a temporary folder first, then renamed into place.

    Raises:
        ExportError: A file cannot be written (a full disk); nothing was replaced.
    """
    import tensorflow as tf

    from tf_finetune.evaluation import plots, scoring

    names = inputs.data.label_names
    try:
        with atomic.staged_files(run_path) as staging:
            atomic.fault_point("report")
            plots.report_png(evaluated.report, staging / CONFUSION_PNG)
            plots.training_curves_png(history, staging / CURVES_PNG)
            if evaluated.thresholds is not None:  # read back by `predict` from Python
                model.config.decision_thresholds = evaluated.thresholds
            model.save_pretrained(staging)
            inputs.tokenizer.save_pretrained(staging)
            (staging / "labels.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
            scoring.write_report(evaluated.report, evaluated.text, staging)
            scoring.write_predictions(
                staging / "predictions.csv",
                inputs.data.splits[evaluated.split]["text"][:],
                evaluated.y_true,
                evaluated.probabilities,
                names,
                evaluated.thresholds,
            )
    except (OSError, tf.errors.OpError) as error:
        # tf.errors.OpError: TensorFlow's file system reports a full disk as
        # ResourceExhaustedError, a read-only one as PermissionDeniedError, ...
        raise ExportError(
            f"Cannot write the run's artefacts to {run_path}: {short_reason(error)}. "
            "Nothing written before was changed; fix the cause (disk space?)."
        ) from None


def _run_dir_path(config: FitConfig) -> Path:
    """Returns the run directory that `config` names."""
    name = config.run_name or _default_run_name(config)
    if not name or Path(name).name != name or name in (".", ".."):
        raise ConfigError(f"Config key 'run_name' must be a plain folder name. Received: {name!r}.")
    return Path(config.output_dir).expanduser() / name


def _default_run_name(config: FitConfig) -> str:
    model = config.model.split(":")[-1].rstrip("/").split("/")[-1]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{model}-{loading.describe_source(config)}-{stamp}"
