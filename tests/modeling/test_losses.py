"""Tests of the classification loss against cross-entropy computed by hand."""

import numpy as np
import pytest
import tensorflow as tf

from tf_finetune.config import load_config
from tf_finetune.errors import ConfigError
from tf_finetune.modeling.losses import ClassificationLoss, class_weights

LOGITS = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0], [-2.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
LABELS = np.array([0, 2, 1, 0])


def log_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def by_hand(weights=None, smoothing=0.0):
    classes = LOGITS.shape[1]
    targets = np.eye(classes)[LABELS] * (1 - smoothing) + smoothing / classes
    losses = -(targets * log_softmax(LOGITS)).sum(axis=-1)
    if weights is not None:
        losses = losses * np.asarray(weights)[LABELS]
    return losses.mean()  # Keras' class_weight: the mean of weighted example losses


@pytest.mark.parametrize(
    ("weights", "smoothing"), [(None, 0.0), ([1.0, 3.0, 0.5], 0.0), (None, 0.1), ([2, 1, 4], 0.2)]
)
def test_loss_equals_weighted_smoothed_cross_entropy_by_hand(weights, smoothing):
    loss = ClassificationLoss(weights, smoothing)
    got = float(loss(tf.constant(LABELS), tf.constant(LOGITS, tf.float32)))
    assert got == pytest.approx(by_hand(weights, smoothing), rel=1e-6)


def test_class_weights_change_the_loss():
    plain = float(ClassificationLoss()(tf.constant(LABELS), tf.constant(LOGITS, tf.float32)))
    heavy = ClassificationLoss([1.0, 1.0, 10.0])
    weighted = float(heavy(tf.constant(LABELS), tf.constant(LOGITS, tf.float32)))
    # Only example 1 is of class 2: its loss counts ten times.
    ce = -log_softmax(LOGITS)[np.arange(4), LABELS]
    assert weighted - plain == pytest.approx(9 * ce[1] / 4, rel=1e-6)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_loss_on_low_precision_logits_is_float32(dtype):
    loss = ClassificationLoss([1.0, 2.0, 1.0], 0.1)
    low = loss(tf.constant(LABELS), tf.cast(tf.constant(LOGITS, tf.float32), dtype))
    assert low.dtype == tf.float32
    assert float(low) == pytest.approx(by_hand([1.0, 2.0, 1.0], 0.1), rel=1e-2)


def test_balanced_weights_are_scikit_learns():
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.array([0, 0, 0, 1, 2, 2])
    want = compute_class_weight("balanced", classes=np.arange(3), y=labels)
    assert class_weights("balanced", ["a", "b", "c"], labels) == pytest.approx(want)


def test_explicit_weights_are_ordered_by_label_id():
    assert class_weights(" pos=2.5, neg=1", ["neg", "pos"], [0, 1]) == [1.0, 2.5]
    assert class_weights(None, ["neg", "pos"], [0, 1]) is None


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("neg=1,happy=2", "'happy' is not a label. Give 'balanced' or label=weight pairs"),
        ("neg=1", "gives no weight for label 'pos'. Name every label: neg=1.0,pos=1.0."),
        ("neg=1,pos=-2", "the weight of 'pos' must be a positive number. Received: '-2'."),
        ("neg=1,pos=x", "the weight of 'pos' must be a positive number. Received: 'x'."),
        ("heavy", "'heavy' is not a label"),
    ],
)
def test_bad_explicit_weights_name_the_label(setting, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        class_weights(setting, ["neg", "pos"], [0, 1])


def test_balanced_weights_need_every_class_in_train():
    with pytest.raises(ConfigError, match="label 'pos' has no training example"):
        class_weights("balanced", ["neg", "pos"], [0, 0])


def test_a_yaml_mapping_of_class_weights_becomes_the_flag_form(tmp_path):
    path = tmp_path / "weights.yaml"
    path.write_text("class_weights:\n  neg: 1\n  pos: 2.5\n", encoding="utf-8")
    config = load_config(path)
    assert config.class_weights == "neg=1,pos=2.5"
    assert class_weights(config.class_weights, ["neg", "pos"], [0, 1]) == [1.0, 2.5]
