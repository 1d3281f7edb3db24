"""``python -m minitx`` is the same as the ``minitx`` command."""
import sys

from minitx.cli import main

sys.exit(main())
