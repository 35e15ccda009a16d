# Specimen of host-sync-per-step (info): a correct, sample-weighted loop on the GPU that calls
# .item() twice per batch. The values are exact; each .item() makes the host wait for the GPU
# to finish the step, so the next batch cannot be queued in advance.
import torch
import torch.nn as nn

device = torch.device("cuda")


def train_one_epoch(model, train_loader, optimizer, criterion):
    model.train()
    running_loss, correct, total = 0.0, 0, 0
    for inputs, targets in train_loader:
        inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        outputs = model(inputs)
        loss = criterion(outputs, targets)
        loss.backward()
        optimizer.step()
        running_loss += loss.item() * inputs.size(0)
        correct += (outputs.argmax(1) == targets).sum().item()
        total += inputs.size(0)
    return running_loss / total, 100.0 * correct / total


if __name__ == "__main__":
    from my_data import make_loaders

    model = nn.Linear(784, 10).to(device)
    train_loader, _ = make_loaders(batch_size=512)
    print(train_one_epoch(model, train_loader, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss()))
