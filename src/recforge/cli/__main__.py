"""``python -m recforge.cli ...`` (the serving tests and benchmarks start servers this way)."""

import sys

from recforge.cli.main import main

sys.exit(main())
