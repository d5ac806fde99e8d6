"""Entry point for `python -m tf_finetune`."""

from tf_finetune.cli import main

if __name__ == "__main__":
    main()
