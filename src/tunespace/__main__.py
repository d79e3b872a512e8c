"""`python -m tunespace` runs the CLI."""

import sys

from tunespace.cli.main import main

if __name__ == "__main__":  # worker processes (spawn) re-import this module; only the parent runs the CLI
    sys.exit(main())
