"""Exporting a SavedModel that tokenizes raw text in core TensorFlow ops."""
