"""``python -m accumbug``: see ``cli.py``. Under torchrun each rank ends through ``exit_rank``."""

import sys

from .cli import main
from .distributed import exit_rank, launched_by_torchrun

code = main()
if launched_by_torchrun():
    exit_rank(code)
sys.exit(code)
