"""``python -m recforge`` (and ``torchrun ... -m recforge train ...``) runs the CLI."""

import sys

from recforge.cli import main

sys.exit(main())
