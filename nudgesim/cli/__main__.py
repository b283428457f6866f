"""`python -m nudgesim.cli ...` is the `nudgesim` command."""

import sys

from . import main

sys.exit(main())
