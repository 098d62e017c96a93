"""`python -m tfprune.cli ...`."""

import sys

from tfprune.cli import main

sys.exit(main())
