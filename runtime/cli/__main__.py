"""``python -m s3pot.runtime.cli``: the ``s3pot`` command."""
import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
