# Clean twin of host-sync-per-step/accelerator.py: the sums stay on the device and are read
# once per epoch.
import torch

device = torch.accelerator.current_accelerator()


def train_epoch(model, loader, optimizer, criterion):
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    seen = 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss = criterion(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach().double() * len(y)
        seen += len(y)
    return loss_sum.item() / seen
