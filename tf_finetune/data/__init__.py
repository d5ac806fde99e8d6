"""Loading, checking, tokenizing and batching the data of a run."""
