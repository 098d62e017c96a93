"""`python -m tfprune ...`: the `tfprune` command line (see `tfprune.cli`)."""

import sys

from tfprune.cli import main

if __name__ == "__main__":
    sys.exit(main())
