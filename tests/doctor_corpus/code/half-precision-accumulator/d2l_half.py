# Specimen of half-precision-accumulator in d2l style: the network runs in float16, its loss
# `l` (not named like a loss) is added as a tensor, so the sum becomes a float16 tensor.
import torch
from torch import nn

net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).half()
loss = nn.CrossEntropyLoss()
trainer = torch.optim.SGD(net.parameters(), lr=0.1)


def train_epoch(train_iter):
    total, n = 0.0, 0
    for X, y in train_iter:
        l = loss(net(X.half()), y)
        trainer.zero_grad()
        l.backward()
        trainer.step()
        total += l * len(y)  # finding: half-precision-accumulator
        n += len(y)
    return total / n
