"""Tests of the package's public entry points."""

import subprocess
import sys


def test_entry_points_are_lazy_and_are_the_library_functions():
    code = (
        "import sys, tf_finetune;"
        "print(sorted(m for m in ('tensorflow', 'transformers') if m in sys.modules));"
        "from tf_finetune import fit, load_config, predict, report, compare, ExportedModel;"
        "from tf_finetune import pipeline, config;"
        "from tf_finetune.serving import prediction, compare as comparison;"
        "print(fit is pipeline.fit, load_config is config.load_config,"
        " predict is prediction.predict, report is prediction.report,"
        " compare is comparison.compare, ExportedModel is prediction.ExportedModel)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    imported, identities = done.stdout.strip().splitlines()
    assert imported == "[]"  # importing the package does not start TensorFlow
    assert identities == "True True True True True True"


def test_an_unknown_name_is_an_attribute_error():
    import pytest

    import tf_finetune

    with pytest.raises(AttributeError, match="no attribute 'fitt'"):
        tf_finetune.fitt  # noqa: B018
