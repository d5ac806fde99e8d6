"""Entry point for `python -m tf_finetune`."""

from tf_finetune.cli import run

if __name__ == "__main__":
    run()
