# Specimen of lossy-serialiser: the epoch loss goes through np.nan_to_num on its way to the
# history, so a NaN epoch is saved as 0.0. The nan_to_num on the inputs is right.
import json

import numpy as np
import torch
from torch import nn

features = torch.tensor(np.nan_to_num(np.load("features.npy")), dtype=torch.float32)
targets = torch.tensor(np.load("targets.npy"), dtype=torch.float32)
model = nn.Linear(features.shape[1], 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
criterion = nn.MSELoss()

history = {"loss": []}
for epoch in range(10):
    loss = criterion(model(features), targets)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    history["loss"].append(float(np.nan_to_num(loss.item())))  # finding: lossy-serialiser
with open("history.json", "w") as handle:
    json.dump(history, handle)
