"""Tests of config layering, validation and round-tripping."""

import pytest
import yaml

from tf_finetune.config import PACKAGED_DATASET, PACKAGED_MODEL, FitConfig, load_config
from tf_finetune.errors import ConfigError


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_the_tutorial_recipe_on_packaged_data():
    config = load_config()
    assert config.model == PACKAGED_MODEL
    assert config.dataset == PACKAGED_DATASET
    assert (config.epochs, config.batch_size, config.learning_rate) == (3, 32, 5e-5)
    assert config.max_length == "auto"


def test_flags_override_the_file_which_overrides_defaults(tmp_path):
    path = write(tmp_path / "c.yaml", "epochs: 5\nbatch_size: 8\nlearning_rate: 2.0e-5\n")
    config = load_config(path, {"epochs": 1, "batch_size": None})
    assert config.epochs == 1  # flag wins
    assert config.batch_size == 8  # flag not given: the file's value
    assert config.learning_rate == 2e-5
    assert config.seed == 42  # default


def test_unknown_key_is_named(tmp_path):
    path = write(tmp_path / "c.yaml", "epochs: 2\nlearning_rat: 0.1\n")
    with pytest.raises(ConfigError, match=r"Unknown config key 'learning_rat' in .*c\.yaml"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("epochs: -1", "'epochs'.*at least 1. Received: -1"),
        ("epochs: two", "'epochs'.*whole number. Received: 'two'"),
        ("epochs: true", "'epochs'.*whole number"),
        ("batch_size: 0", "'batch_size'.*at least 1"),
        ("learning_rate: fast", "'learning_rate'.*a number. Received: 'fast'"),
        ("learning_rate: 0", "'learning_rate'.*greater than 0"),
        ("learning_rate: .nan", "'learning_rate'.*finite"),
        ("padding: longest", "'padding'.*one of grouped, dynamic, max_length"),
        ("max_length: 4", "'max_length'.*'auto' or a whole number >= 8"),
        ("max_length: long", "'max_length'.*whole number or 'auto'"),
        ("validation_split: 1.5", "'validation_split'.*between 0 and 1"),
        ("text_column: [a, b]", "'text_column'.*a string"),
        ("epochs:", "'epochs'.*needs a value"),
    ],
)
def test_bad_values_name_key_and_value(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path / "c.yaml", text + "\n"))


def test_yaml_style_exponent_strings_are_numbers(tmp_path):
    # PyYAML reads "5e-5" (no dot) as a string; users write it that way.
    config = load_config(write(tmp_path / "c.yaml", "learning_rate: 5e-5\nmax_length: '64'\n"))
    assert config.learning_rate == 5e-5
    assert config.max_length == 64


def test_invalid_yaml_names_the_line(tmp_path):
    path = write(tmp_path / "c.yaml", "epochs: 2\nmodel: [unclosed\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line 3"):
        load_config(path)


def test_config_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match=r"must be a YAML mapping.*Received: a list"):
        load_config(write(tmp_path / "c.yaml", "- epochs\n"))


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_dataset_and_files_are_exclusive():
    with pytest.raises(ConfigError, match="Use either --dataset or --train-file"):
        load_config(overrides={"dataset": "imdb", "train_file": "t.csv"})
    with pytest.raises(ConfigError, match="need train_file"):
        load_config(overrides={"test_file": "t.csv"})


def test_train_file_replaces_the_packaged_dataset():
    assert load_config(overrides={"train_file": "t.csv"}).dataset is None


def test_written_yaml_reads_back_unchanged(tmp_path):
    config = load_config(overrides={"epochs": 7, "max_length": 33, "text_pair_column": "b"})
    (tmp_path / "out.yaml").write_text(config.to_yaml(), encoding="utf-8")
    assert load_config(tmp_path / "out.yaml") == config
    assert list(yaml.safe_load((tmp_path / "out.yaml").read_text())) == list(FitConfig().to_dict())


def test_every_shipped_config_is_valid():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert configs, "configs/ holds the seeds' experiments"
    for path in configs:
        load_config(path)


def test_adamw_gets_its_default_weight_decay_and_adam_refuses_one():
    assert load_config(overrides={"optimizer": "adamw"}).weight_decay == 0.01
    assert load_config(overrides={"optimizer": "adamw", "weight_decay": 0}).weight_decay == 0
    assert load_config().weight_decay is None
    with pytest.raises(ConfigError, match="plain Adam has no decoupled weight decay"):
        load_config(overrides={"weight_decay": 0.1})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"unfreeze_after": 1}, "unfreeze_after needs freeze_base. Add --freeze-base."),
        (
            {"freeze_base": True, "unfreeze_after": 3, "epochs": 3},
            r"unfreeze_after \(3\) must be less than epochs \(3\)",
        ),
        ({"label_smoothing": 1.0}, "'label_smoothing' .* must be at least 0 and less than 1"),
        ({"weight_decay": -0.1, "optimizer": "adamw"}, "'weight_decay' .* must be 0 or more"),
        ({"clip_norm": 0}, "'clip_norm' .* must be greater than 0"),
        ({"gradient_accumulation_steps": 0}, "'gradient_accumulation_steps' .* at least 1"),
        ({"monitor": "loss"}, "'monitor' .* must be one of val_loss, val_accuracy"),
        ({"max_windows": 2}, "max_windows sets the windows of --long-text windows"),
        (
            {"long_text": "windows", "text_pair_column": "b"},
            "--long-text windows takes single texts",
        ),
        ({"truncation": "middle"}, "'truncation' .* must be one of auto, head, tail, head_tail"),
    ],
)
def test_training_controls_are_checked(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=overrides)


def test_early_stopping_restores_the_best_epoch():
    assert not load_config().restore_best
    assert load_config(overrides={"early_stopping_patience": 2}).restore_best


def test_a_linear_schedule_fixes_the_number_of_epochs_on_resume():
    from tf_finetune.config import differences

    constant, linear = load_config(), load_config(overrides={"lr_schedule": "linear"})
    assert differences(constant, load_config(overrides={"epochs": 5})) == []
    changed = differences(linear, load_config(overrides={"lr_schedule": "linear", "epochs": 5}))
    assert changed == ["epochs: 3 -> 5"]


def test_a_bad_value_is_blamed_on_where_it_came_from(tmp_path):
    path = write(tmp_path / "c.yaml", "epochs: 2\n")
    with pytest.raises(ConfigError, match=r"'batch_size' \(from the command line\) must be at"):
        load_config(path, {"batch_size": 0})
    bad = write(tmp_path / "bad.yaml", "epochs: 0\n")
    with pytest.raises(ConfigError, match=rf"'epochs' \(from {bad}\) must be at least 1"):
        load_config(bad, {"batch_size": 8})


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"text_column": "label"}, r"'text_column' and 'label_column' .*both name column 'label'"),
        (
            {"text_pair_column": "text"},
            r"'text_column' and 'text_pair_column' .*both name column 'text'",
        ),
        ({"validation_file": "", "train_file": "t.csv"}, r"'validation_file' .* is empty"),
        ({"text_column": " "}, r"'text_column' .* is empty"),
    ],
)
def test_ambiguous_columns_and_empty_values_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_one_file_by_relative_and_absolute_path_is_no_difference(tmp_path, monkeypatch):
    from tf_finetune.config import differences

    (tmp_path / "train.csv").write_text("text,label\n", encoding="utf-8")
    (tmp_path / "other.csv").write_text("text,label\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    relative = load_config(None, {"train_file": "train.csv"})
    absolute = load_config(None, {"train_file": str(tmp_path / "train.csv")})
    assert differences(relative, absolute) == []
    other = load_config(None, {"train_file": "other.csv"})
    assert differences(relative, other) == ["train_file: 'train.csv' -> 'other.csv'"]


def test_every_field_declares_its_roles():
    from tf_finetune.config import FIELDS, STAGES

    for name, field in FIELDS.items():
        meta = field.metadata
        assert meta.get("stage") in STAGES, f"{name} declares no stage"
        assert isinstance(meta.get("resumable"), bool), f"{name} does not say if resumable"
        assert isinstance(meta.get("hparam"), bool), f"{name} does not say if an hparam"
        assert meta.get("help"), f"{name} has no help text"


def test_the_role_lists_are_derived_from_the_fields():
    from tf_finetune import config
    from tf_finetune.training import best_epoch

    assert set(config.RESUMABLE_CHANGES) == {
        "epochs", "checkpoint_steps", "log_steps", "output_dir", "run_name",
        "jit_compile", "strategy", "devices", "deterministic", "tune_thresholds",
    }  # fmt: skip
    assert "train_file" in config.DATA_KEYS and "learning_rate" not in config.DATA_KEYS
    assert "learning_rate" in config.HPARAM_KEYS and "output_dir" not in config.HPARAM_KEYS
    assert config.FIELDS["monitor"].metadata["choices"] == tuple(config.MONITORS)
    assert best_epoch.best_index([0.3, 0.1, 0.2], "val_loss") == 1
    assert best_epoch.best_index([0.3, 0.1, 0.2], "val_macro_f1") == 0
