"""Scoring a model: the classification report and its pictures."""
