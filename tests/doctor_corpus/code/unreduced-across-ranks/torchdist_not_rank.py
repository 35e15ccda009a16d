# also: host-sync-per-step
# Specimen of unreduced-across-ranks with the rank read from the environment and tested as
# `if not rank:`. The file gathers something (a log-probability per label, and a product of
# shapes through functools.reduce), but neither is a collective: the epoch's loss sum is rank 0's own.
import functools
import operator
import os

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler


def run(dataset, net, epochs):
    rank = int(os.environ["RANK"])
    dist.init_process_group("nccl")
    net = DistributedDataParallel(net.cuda())
    sampler = DistributedSampler(dataset, drop_last=True)
    loader = DataLoader(dataset, batch_size=64, sampler=sampler)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-4)
    weights = sum(functools.reduce(operator.mul, p.shape, 1) for p in net.parameters())
    for epoch in range(epochs):
        total, n = 0.0, 0
        for x, y in loader:
            logp = F.log_softmax(net(x.cuda()), dim=1)
            nll = -logp.gather(1, y.cuda()[:, None]).mean()
            opt.zero_grad()
            nll.backward()
            opt.step()
            total += nll.item() * len(y)
            n += len(y)
        if not rank:
            print(f"epoch {epoch} nll {total / n:.4f} ({weights} weights)")  # finding: unreduced-across-ranks
