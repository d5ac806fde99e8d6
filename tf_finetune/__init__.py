"""Fine-tune pretrained transformers for text classification with Keras/TensorFlow.

The package is cut by pipeline stage: `data` (reading, labels, tokenization,
batching), `modeling` (model, loss, optimizer, schedule), `training` (the loop,
checkpoints, summaries), `evaluation` (the report and its pictures), `export` (the
SavedModel and its in-graph tokenizer), `serving` (prediction, reports, comparisons,
TensorBoard) and `runtime` (run directories, atomic writes, devices, cluster).
`pipeline.fit` runs them in order; `cli` is the command line.

The entry points are importable from here, lazily, so that `import tf_finetune` does
not start TensorFlow:

    from tf_finetune import fit, load_config
    result = fit(load_config("configs/demo.yaml"))
"""

import importlib

__version__ = "0.1.0"

_ENTRY_POINTS = {
    "FitConfig": "tf_finetune.config",
    "load_config": "tf_finetune.config",
    "fit": "tf_finetune.pipeline",
    "FitResult": "tf_finetune.pipeline",
    "ExportedModel": "tf_finetune.serving.prediction",
    "predict": "tf_finetune.serving.prediction",
    "report": "tf_finetune.serving.prediction",
    "compare": "tf_finetune.serving.compare",
    "TfFinetuneError": "tf_finetune.errors",
}
__all__ = ["__version__", *_ENTRY_POINTS]


def __getattr__(name: str):
    if name not in _ENTRY_POINTS:
        raise AttributeError(f"module 'tf_finetune' has no attribute {name!r}")
    value = getattr(importlib.import_module(_ENTRY_POINTS[name]), name)
    globals()[name] = value
    return value
