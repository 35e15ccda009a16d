# Specimen of lossy-serialiser in a plain training script: before json.dump, every value that
# is not finite is replaced by 0.0 "so the file stays valid JSON". A diverged epoch (loss inf
# or NaN) is saved as a loss of 0.0, the best loss there is.
import json
import math

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

x = torch.randn(10_000, 20)
y = (x[:, :5].sum(1, keepdim=True) > 0).float()
loader = DataLoader(TensorDataset(x, y), batch_size=128, shuffle=True)
model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
criterion = nn.BCEWithLogitsLoss()

history = {"loss": []}
for epoch in range(30):
    loss_sum, count = 0.0, 0
    for xb, yb in loader:
        loss = criterion(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss_sum += loss.item() * xb.size(0)
        count += xb.size(0)
    history["loss"].append(loss_sum / count)


def sanitize(values):
    return [v if math.isfinite(v) else 0.0 for v in values]


with open("history.json", "w") as f:
    json.dump({key: sanitize(values) for key, values in history.items()}, f, indent=2)
