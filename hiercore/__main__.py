"""`python -m hiercore` runs the command line."""

import sys

from hiercore.cli import main

sys.exit(main())
