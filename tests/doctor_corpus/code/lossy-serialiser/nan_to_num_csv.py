# Specimen of lossy-serialiser: the epoch's row is cleaned with np.nan_to_num before the CSV
# writer gets it; an inf loss is written as 1.8e308.
import csv

import numpy as np


def write_epochs(path, epochs):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "loss", "accuracy"])
        for epoch, metrics in enumerate(epochs):
            row = np.nan_to_num(np.array([epoch, metrics["loss"], metrics["accuracy"]]))  # finding: lossy-serialiser
            writer.writerow(row.tolist())
