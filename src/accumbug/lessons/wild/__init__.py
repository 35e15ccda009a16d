"""In the wild: what Lightning, Keras, HF Trainer, torchmetrics and ignite really do with epoch metrics.

Each framework's module (``lightning_cases``, ``keras_cases``, ``hf_cases``,
``torchmetrics_cases``, ``ignite_cases``) runs small cases on one shared uneven-batch data set
(``data.py``) and returns ``WildCase`` records (``record.py``): what the framework displayed,
what it saved, the exact value. ``summary.py`` puts them in one table and one figure. Taught
in ``notebooks/07_in_the_wild.ipynb``.

The frameworks are the ``[wild]`` extra (``pip install -e ".[wild]"``); they are imported inside
the case functions, so this package imports without them. Older versions (Keras 3.1.1 and
3.5.0) run as subprocesses from their own cache folders (``versions.py``), never installed
into the user's environment.
"""

__all__ = ["FRAMEWORKS"]

# the [wild] extra, once: import name -> distribution name (pyproject.toml pins each distribution;
# tests/test_packaging.py fails when the two lists differ). notebooks/conftest.py skips notebook 07
# without them, and tests/test_layout.py maps each import to its distribution.
FRAMEWORKS = {"lightning": "lightning", "keras": "keras", "transformers": "transformers", "accelerate": "accelerate",
              "ignite": "pytorch-ignite", "torchmetrics": "torchmetrics"}
