"""Fine-tune pretrained transformers for text classification with Keras/TensorFlow."""

__version__ = "0.1.0"
