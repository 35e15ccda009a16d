# Clean twin of d2l_style.py: the loss keeps one value per sample (reduction="none"), the sum
# adds l.sum() and the count adds y.numel(), so total / n is the mean over samples.
import torch
from torch import nn


def train_epoch(net, train_iter, loss, updater):
    total, n = 0.0, 0
    for X, y in train_iter:
        l = loss(net(X), y)
        updater.zero_grad()
        l.mean().backward()
        updater.step()
        total += float(l.sum())
        n += y.numel()
    return total / n


net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
loss = nn.CrossEntropyLoss(reduction="none")
trainer = torch.optim.SGD(net.parameters(), lr=0.1)
