# Clean: a device that the file states is the CPU, and .item() each batch: no host sync to
# report, and the sum is weighted by batch size.
import torch


def train(model, loader, optimizer, criterion, device="cpu"):
    model.to(device)
    total, seen = 0.0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss = criterion(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(y)
        seen += len(y)
    return total / seen


if __name__ == "__main__":
    print(torch.get_num_threads())
