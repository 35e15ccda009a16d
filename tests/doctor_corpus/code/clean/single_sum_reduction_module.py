# Clean: a loss module built with reduction="sum" gives the batch's sum, so adding its value and
# dividing by the samples seen is the exact epoch mean (a trap for a check that reads the loss as a batch mean).
import torch
import torch.nn as nn
import torch.nn.functional as F


def train(model, loader, optimizer):
    criterion = nn.CrossEntropyLoss(reduction="sum")
    summed, seen = 0.0, 0
    for x, y in loader:
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        (loss / len(y)).backward()
        optimizer.step()
        summed += loss.item()
        seen += len(y)
    return summed / seen


def test(model, loader):
    test_loss = 0.0
    with torch.no_grad():
        for data, target in loader:
            output = model(data)
            test_loss += F.nll_loss(output, target, reduction="sum").item()
    test_loss /= len(loader.dataset)
    return test_loss
