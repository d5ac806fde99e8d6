"""Tests of the learning rate schedules against values worked out by hand."""

import pytest

from tf_finetune.config import load_config
from tf_finetune.errors import ConfigError
from tf_finetune.modeling import schedules


def rates(schedule, steps):
    return [float(schedule(step)) for step in steps]


def test_linear_warmup_then_decay_matches_transformers_linear_schedule():
    # get_linear_schedule_with_warmup: step/warmup while warming, then
    # (total - step) / (total - warmup), never below 0.
    schedule = schedules.WarmupLinear(1e-3, warmup_steps=4, total_steps=10)
    got = rates(schedule, [0, 1, 2, 4, 5, 7, 9, 10, 12])
    want = [0.0, 2.5e-4, 5e-4, 1e-3, 1e-3 * 5 / 6, 5e-4, 1e-3 / 6, 0.0, 0.0]
    assert got == pytest.approx(want, abs=1e-9)


def test_warmup_without_decay_holds_the_peak():
    schedule = schedules.WarmupLinear(2e-5, warmup_steps=4, total_steps=10, decay=False)
    assert rates(schedule, [0, 2, 4, 9, 20]) == pytest.approx([0, 1e-5, 2e-5, 2e-5, 2e-5])


def test_linear_decay_without_warmup_starts_at_the_peak():
    schedule = schedules.WarmupLinear(1.0, warmup_steps=0, total_steps=4)
    assert rates(schedule, [0, 1, 3, 4]) == pytest.approx([1.0, 0.75, 0.25, 0.0])


def test_optimizer_steps_count_one_update_per_accumulated_group_per_epoch():
    assert schedules.optimizer_steps(10, 3, 1) == 30
    assert schedules.optimizer_steps(10, 3, 4) == 9  # groups of 4, 4 and 2 each epoch


def test_learning_rate_is_a_float_for_the_tutorial_recipe():
    assert schedules.learning_rate(load_config(), 100) == 5e-5


def test_warmup_ratio_is_a_share_of_all_optimizer_steps():
    config = load_config(None, {"lr_schedule": "linear", "warmup_ratio": 0.1})
    schedule = schedules.learning_rate(config, 50)
    assert (schedule.warmup_steps, schedule.total_steps, schedule.decay) == (5, 50, True)
    constant = schedules.learning_rate(load_config(None, {"warmup_steps": 3}), 50)
    assert (constant.warmup_steps, constant.decay) == (3, False)


def test_warmup_longer_than_the_run_is_refused():
    config = load_config(None, {"warmup_steps": 60})
    with pytest.raises(ConfigError, match=r"'warmup_steps' \(60\) is more than the run's 50"):
        schedules.learning_rate(config, 50)


def test_warmup_steps_and_ratio_together_are_refused():
    with pytest.raises(ConfigError, match="Both warmup_steps and warmup_ratio"):
        load_config(None, {"warmup_steps": 5, "warmup_ratio": 0.1})
