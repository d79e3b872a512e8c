"""`python -m tunespace` runs the CLI."""

import sys

from tunespace.cli.main import main

sys.exit(main())
