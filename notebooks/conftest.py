"""The notebooks under nbval: every cell in the slow tier; notebook 07 skipped without the ``[wild]`` extra.

Here rather than in ``tests/conftest.py`` so that it also holds for ``pytest notebooks/...`` alone.
"""

import importlib.util
import os

import pytest

from accumbug.lessons.wild import FRAMEWORKS

WILD_NOTEBOOK = "07_in_the_wild.ipynb"
WILD_MODULES = tuple(FRAMEWORKS)  # the [wild] extra's import names


def pytest_collection_modifyitems(config, items):
    """Mark every notebook cell (nbval items, from ``.ipynb`` files) slow; skip notebook 07 without the [wild] extra.

    Under ``ACCUMBUG_REQUIRE_WILD=1`` (CI) notebook 07 is never skipped: a missing framework fails it.
    """
    missing = [name for name in WILD_MODULES if importlib.util.find_spec(name) is None]
    required = os.environ.get("ACCUMBUG_REQUIRE_WILD") == "1"
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
        if item.path.name == WILD_NOTEBOOK and missing and not required:
            item.add_marker(pytest.mark.skip(reason=f"needs {', '.join(missing)}: pip install -e \".[wild]\""))
