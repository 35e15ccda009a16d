# Specimen of lossy-serialiser in a Lightning callback that writes the epoch metrics to JSON
# after np.nan_to_num: a NaN loss is saved as 0.0 and an inf one as 1.8e308.
import json
from pathlib import Path

import lightning as L
import numpy as np


class JsonMetricsCallback(L.Callback):
    def __init__(self, path="metrics.json"):
        self.path = Path(path)
        self.rows = []

    def on_train_epoch_end(self, trainer, pl_module):
        row = {"epoch": trainer.current_epoch}
        for name, value in trainer.callback_metrics.items():
            row[name] = float(np.nan_to_num(value.cpu().numpy()))
        self.rows.append(row)
        self.path.write_text(json.dumps(self.rows, indent=1))


trainer = L.Trainer(max_epochs=10, callbacks=[JsonMetricsCallback()])
