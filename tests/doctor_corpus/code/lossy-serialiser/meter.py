# Specimen of lossy-serialiser in a metrics logger: to_python() turns whatever it cannot
# convert into 0.0, and json.dump's default= writes 0 for any object JSON does not know,
# such as a 0-dim tensor that a tracker returned instead of a float.
import json


def to_python(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


class MetricsLogger:
    def __init__(self, path):
        self.path = path
        self.history = {}

    def log_epoch(self, metrics: dict):
        for key, value in metrics.items():
            self.history.setdefault(key, []).append(value)

    def save(self):
        with open(self.path, "w") as handle:
            json.dump(self.history, handle, default=lambda obj: 0)

    def save_floats(self, path):
        floats = {key: [to_python(v) for v in values] for key, values in self.history.items()}
        with open(path, "w") as handle:
            json.dump(floats, handle)
