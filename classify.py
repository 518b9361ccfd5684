"""Stage 2 entry point: ``python classify.py --help``."""

from pipeline.cli.classify import main

if __name__ == "__main__":
    raise SystemExit(main())
