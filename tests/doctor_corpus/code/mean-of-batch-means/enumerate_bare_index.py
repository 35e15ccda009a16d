# Specimen of mean-of-batch-means divided by a bare enumerate index: after the loop `i` is one
# less than the number of batches, and the sum is of batch means.
import torch.nn as nn

criterion = nn.MSELoss()


def train(model, loader, optimizer):
    total = 0.0
    for i, (x, y) in enumerate(loader):
        loss = criterion(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item()
    return total / i  # finding: mean-of-batch-means
