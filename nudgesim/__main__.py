"""`python -m nudgesim ...` is the `nudgesim` command (for environments without the script)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
