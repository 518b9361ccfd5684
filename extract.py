"""Stage 1 entry point: ``python extract.py --help``."""

from pipeline.cli.extract import main

if __name__ == "__main__":
    raise SystemExit(main())
