"""``python -m accumbug``: see ``cli.py``. Under torchrun each rank ends through ``exit_rank``."""

import sys

from .cli import main

code = main()
distributed = sys.modules.get("accumbug.distributed")  # imported by the commands that train; never by ``doctor``
if distributed is not None and distributed.launched_by_torchrun():
    distributed.exit_rank(code)
sys.exit(code)
