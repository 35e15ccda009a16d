"""One Keras epoch on the shared uneven data set, in a process of its own: ``keras_cases`` runs it per version.

``KERAS_BACKEND=torch python -m accumbug.lessons.wild.keras_worker FOLDER`` fits a zero ``Dense(1)``
at learning rate 0 (batch 16, no shuffling, ``verbose=1``) on ``uneven_data()``, exactly as a user
would, and keeps what a user would keep.

* ``FOLDER/console-<version>.log``: everything Keras wrote to the console during ``fit``, as
  written (colour codes, carriage returns and backspaces included), as ``python train.py > log``
  would capture it;
* ``FOLDER/history-<version>.json``: ``json.dump(history.history, f)``, the usual way to save a
  History.

It prints one JSON object on stdout: the Keras version and backend, the History and the two
files' paths. It runs in a subprocess so that the Keras version under test is the one first on
``sys.path`` (an older one from ``versions.cached_install``, or the installed one) and so that
importing Keras never changes the notebook's process (``notebooks/07_in_the_wild.ipynb``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from .data import FEATURES, uneven_data


def _zero_model(keras):
    """``Dense(1)`` with zero weights and bias, MSE, SGD at learning rate 0: the loss of sample i stays target_i**2."""
    keras.config.set_floatx("float32")  # the user's keras.json may say otherwise; the data set is float32
    model = keras.Sequential([keras.Input(shape=(FEATURES,)),
                              keras.layers.Dense(1, kernel_initializer="zeros", bias_initializer="zeros")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse")
    return model


def _fit(keras, console: Path) -> dict:
    """One epoch of ``model.fit`` on the shared data with Keras's console output captured in ``console``."""
    data = uneven_data()
    model = _zero_model(keras)
    with open(console, "w", encoding="utf-8", newline="") as log, contextlib.redirect_stdout(log):
        history = model.fit(data.features.numpy(), data.targets.numpy(), batch_size=data.batch_size, epochs=1,
                            shuffle=False, verbose=1)
    return history.history


def main(argv: list[str] | None = None) -> None:
    """Fit, save the History and the console in FOLDER, and print what was measured as one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where console-<version>.log and history-<version>.json go")
    folder = parser.parse_args(argv).folder
    import keras  # here, not at the top: this module is imported by tests and documentation tools without Keras

    if keras.backend.backend() != "torch":
        sys.exit(f"Keras runs on {keras.backend.backend()!r}; set KERAS_BACKEND=torch")
    folder.mkdir(parents=True, exist_ok=True)
    console = folder / f"console-{keras.__version__}.log"
    history = _fit(keras, console)
    saved = folder / f"history-{keras.__version__}.json"
    with open(saved, "w", encoding="utf-8") as f:
        json.dump(history, f)
    print(json.dumps({"version": keras.__version__, "backend": keras.backend.backend(), "history": history,
                      "console": str(console), "saved": str(saved)}))


if __name__ == "__main__":
    main()
