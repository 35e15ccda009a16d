# Specimen of unreduced-across-ranks where the other ranks are sent away first: `if rank != 0:`
# waits at a barrier, and its `else` writes the history. What it writes is rank 0's meter.
import json

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler


class RunningMean:
    def __init__(self):
        self.total, self.count = 0.0, 0

    def update(self, value, n):
        self.total += value * n
        self.count += n


def fit(model, train_set, loss_fn, optimizer, epochs, rank):
    sampler = DistributedSampler(train_set)
    loader = DataLoader(train_set, batch_size=32, sampler=sampler)
    history = []
    for epoch in range(epochs):
        meter = RunningMean()
        for inputs, targets in loader:
            loss = loss_fn(model(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            meter.update(loss.detach(), targets.numel())
        if rank != 0:
            dist.barrier()
        else:
            history.append({"epoch": epoch, "loss": float(meter.total / meter.count)})  # finding: unreduced-across-ranks
            with open("history.json", "w") as f:
                json.dump(history, f)
            dist.barrier()
    return torch.tensor(0)
