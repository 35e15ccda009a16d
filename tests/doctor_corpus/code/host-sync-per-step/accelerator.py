# Specimen of host-sync-per-step (info) on a device chosen by torch.accelerator: the file never
# says "cuda", but .item() each batch still waits for the device.
import torch

device = torch.accelerator.current_accelerator()


def train_epoch(model, loader, optimizer, criterion):
    total, seen = 0.0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss = criterion(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(y)  # finding: host-sync-per-step
        seen += len(y)
    return total / seen
