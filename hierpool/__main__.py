"""``python -m hierpool``: the same as the ``hierpool`` command."""

import sys

from .cli import main

sys.exit(main())
