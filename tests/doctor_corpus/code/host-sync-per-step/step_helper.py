# Specimen of host-sync-per-step (info) with the step in a helper: train_step() runs once per
# batch and returns loss.item(), which waits for the device.
import torch.nn.functional as F


def train_step(model, batch, optimizer, device):
    x, y = (t.to(device) for t in batch)
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item() * len(y), len(y)  # finding: host-sync-per-step


def train_epoch(model, loader, optimizer, device):
    total, seen = 0.0, 0
    for batch in loader:
        batch_sum, n = train_step(model, batch, optimizer, device)
        total += batch_sum
        seen += n
    return total / seen
