"""``python -m hierpool``: the same as the ``hierpool`` command."""

import sys

from hierpool.workflow.cli import main

sys.exit(main())
