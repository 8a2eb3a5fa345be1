"""``python -m deepmad``: the ``deepmad`` command."""
import sys

from .cli import main

sys.exit(main())
