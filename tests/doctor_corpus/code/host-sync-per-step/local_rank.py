# Specimen of host-sync-per-step (info) with the model moved to a local rank's device:
# .to(local_rank) puts it on a GPU, and float(loss) each batch syncs.
import os

import torch.nn.functional as F

local_rank = int(os.environ.get("LOCAL_RANK", 0))


def train(model, loader, optimizer):
    model = model.to(local_rank)
    total, seen = 0.0, 0
    for x, y in loader:
        x, y = x.to(local_rank), y.to(local_rank)
        loss = F.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += float(loss) * len(y)  # finding: host-sync-per-step
        seen += len(y)
    return total / seen
