"""Tests of the installed-stack check."""

import importlib.metadata

import pytest

from tf_finetune.errors import DependencyError
from tf_finetune.runtime import environment


def fake_versions(monkeypatch, **versions):
    real = importlib.metadata.version

    def version(name):
        key = name.replace("-", "_")
        if key in versions:
            if versions[key] is None:
                raise importlib.metadata.PackageNotFoundError(name)
            return versions[key]
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)


def test_the_pinned_stack_passes():
    environment.check_environment()


def test_transformers_5_is_refused(monkeypatch):
    fake_versions(monkeypatch, transformers="5.2.0")
    with pytest.raises(DependencyError, match=r"transformers 5\.2\.0 has no TensorFlow models"):
        environment.check_environment()


def test_missing_tf_keras_is_refused(monkeypatch):
    fake_versions(monkeypatch, tf_keras=None)
    with pytest.raises(DependencyError, match="tf-keras is not installed"):
        environment.check_environment()


def test_mismatched_tf_keras_is_refused(monkeypatch):
    fake_versions(monkeypatch, tf_keras="2.19.0", tensorflow="2.21.0")
    with pytest.raises(DependencyError, match=r"tf-keras 2\.19\.0 does not match"):
        environment.check_environment()
