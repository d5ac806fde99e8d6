"""Using exports: prediction, reports, comparisons and TensorBoard."""
