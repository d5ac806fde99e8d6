"""The training loss: cross-entropy on float32 logits, with class weights and smoothing.

Multi-label runs take `MultiLabelLoss`: a sigmoid per label and binary cross-entropy,
with `class_weights` weighing each label's positive examples (`balanced`: negatives /
positives, so a rare label's few positives weigh as much as its many negatives).

Class weights follow Keras' `fit(class_weight=...)`: each example's loss is scaled by
its class's weight and the batch's loss is the mean over its examples. `balanced` is
scikit-learn's `compute_class_weight("balanced")`: examples / (classes x count of the
class), so every class weighs as much as the others in total. The loss is the same on
validation, so `val_loss` measures what training minimises.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras

from tf_finetune.errors import ConfigError


class ClassificationLoss(tf_keras.losses.Loss):
    """Sparse categorical cross-entropy on logits, computed in float32.

    Under a mixed precision policy the classifier's logits are float16 or bfloat16;
    the softmax and log of the loss stay in float32.

    Args:
        class_weights: One weight per class id, or None.
        label_smoothing: Share of each target's probability spread evenly over the
            classes (0 is none).
    """

    def __init__(self, class_weights=None, label_smoothing: float = 0.0, **kwargs):
        super().__init__(name=kwargs.pop("name", "classification_loss"), **kwargs)
        self.class_weights = None if class_weights is None else list(map(float, class_weights))
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        logits = tf.cast(y_pred, tf.float32)
        labels = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
        if self.label_smoothing:
            targets = tf.one_hot(labels, tf.shape(logits)[-1])
            losses = tf_keras.losses.categorical_crossentropy(
                targets, logits, from_logits=True, label_smoothing=self.label_smoothing
            )
        else:
            losses = tf_keras.losses.sparse_categorical_crossentropy(
                labels, logits, from_logits=True
            )
        if self.class_weights is not None:
            losses *= tf.gather(tf.constant(self.class_weights, tf.float32), labels)
        return losses

    def get_config(self):
        return super().get_config() | {
            "class_weights": self.class_weights,
            "label_smoothing": self.label_smoothing,
        }


class MultiLabelLoss(tf_keras.losses.Loss):
    """Binary cross-entropy of each label's sigmoid, computed in float32, averaged over labels.

    Args:
        positive_weights: A weight per label for its positive examples, or None.
        label_smoothing: Targets move this share towards 0.5 (0 is none).
    """

    def __init__(self, positive_weights=None, label_smoothing: float = 0.0, **kwargs):
        super().__init__(name=kwargs.pop("name", "multi_label_loss"), **kwargs)
        self.positive_weights = (
            None if positive_weights is None else list(map(float, positive_weights))
        )
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        logits = tf.cast(y_pred, tf.float32)
        targets = tf.cast(y_true, tf.float32)
        if self.label_smoothing:
            targets = targets * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        if self.positive_weights is None:
            losses = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
        else:
            weights = tf.constant(self.positive_weights, tf.float32)
            losses = tf.nn.weighted_cross_entropy_with_logits(targets, logits, weights)
        return tf.reduce_mean(losses, axis=-1)

    def get_config(self):
        return super().get_config() | {
            "positive_weights": self.positive_weights,
            "label_smoothing": self.label_smoothing,
        }


def exact_match(y_true, y_pred):
    """Multi-label accuracy: 1 for an example whose every label is right at 0.5, else 0."""
    right = tf.equal(tf.cast(y_pred, tf.float32) > 0, tf.cast(y_true, tf.float32) > 0.5)
    return tf.cast(tf.reduce_all(right, axis=-1), tf.float32)


def class_weights(setting: str | None, label_names: list[str], train_labels) -> list[float] | None:
    """Returns one weight per class id for a `class_weights` setting.

    Args:
        setting: None, "balanced", or "label=weight,label=weight" naming every label.
        label_names: Label names by id.
        train_labels: The training split's label ids, or multi-label 0/1 rows (for
            "balanced"; for multi-label data the weights are those of each label's
            positive examples).

    Raises:
        ConfigError: The setting names an unknown label, leaves one out, or holds a
            weight that is not a positive number; or "balanced" meets a class with no
            training example.
    """
    if setting is None:
        return None
    where = "Config key 'class_weights'"
    if setting == "balanced" and np.ndim(train_labels) == 2:  # multi-label: positives
        positives = np.asarray(train_labels).sum(axis=0)
        if not positives.all():
            missing = label_names[int(np.flatnonzero(positives == 0)[0])]
            raise ConfigError(
                f"{where} is 'balanced', but label {missing!r} has no training example. "
                "Give explicit weights, or add examples of it."
            )
        return [float(v) for v in (len(train_labels) - positives) / positives]
    if setting == "balanced":
        counts = np.bincount(np.asarray(train_labels), minlength=len(label_names))
        if not counts.all():
            missing = label_names[int(np.flatnonzero(counts == 0)[0])]
            raise ConfigError(
                f"{where} is 'balanced', but label {missing!r} has no training example. "
                "Give explicit weights, or add examples of it."
            )
        return [float(v) for v in counts.sum() / (len(label_names) * counts)]
    weights = {}
    for item in setting.split(","):
        name, equals, value = item.strip().rpartition("=")
        if not equals or name.strip() not in label_names:
            shown = name.strip() if equals else item.strip()
            raise ConfigError(
                f"{where}: {shown!r} is not a label. Give 'balanced' or label=weight pairs "
                f"for the labels {', '.join(label_names)}."
            )
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if not weight > 0 or not np.isfinite(weight):
            raise ConfigError(
                f"{where}: the weight of {name.strip()!r} must be a positive number. "
                f"Received: {value!r}."
            )
        weights[name.strip()] = weight
    missing = [name for name in label_names if name not in weights]
    if missing:
        raise ConfigError(
            f"{where} gives no weight for label {missing[0]!r}. Name every label: "
            + ",".join(f"{name}=1.0" for name in label_names)
            + "."
        )
    return [weights[name] for name in label_names]
