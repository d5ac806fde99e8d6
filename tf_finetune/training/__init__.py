"""The training loop and what runs beside it: checkpoints, summaries, speed."""
