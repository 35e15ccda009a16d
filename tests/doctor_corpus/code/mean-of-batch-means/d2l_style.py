# Specimen of mean-of-batch-means in d2l style: the loss is called `l`, the loop runs over
# `train_iter`, and the epoch loss divides a sum of batch means by `n`, a count of batches.
import torch
from torch import nn


def train_epoch(net, train_iter, loss, updater):
    total, n = 0.0, 0
    for X, y in train_iter:
        l = loss(net(X), y)
        updater.zero_grad()
        l.backward()
        updater.step()
        total += float(l)
        n += 1
    return total / n  # finding: mean-of-batch-means


net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
trainer = torch.optim.SGD(net.parameters(), lr=0.1)
