# Clean twin of half-precision-accumulator/d2l_half.py: the float16 loss is read with float()
# before it is added, so the sum is a Python float (float64).
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
        total += float(l) * len(y)
        n += len(y)
    return total / n
