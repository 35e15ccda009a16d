# Clean: the sampler pads each shard (drop_last is left False), but every batch carries a
# `counted` mask that is False on the padding repeats, so the sums reduced across ranks count
# each sample once.
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler


@torch.no_grad()
def evaluate(model, indexed_set, size, device):
    loader = DataLoader(indexed_set, batch_size=100, sampler=DistributedSampler(indexed_set, shuffle=False))
    sums = torch.zeros(2, dtype=torch.float64, device=device)
    for index, x, y in loader:
        counted = (index < size).to(device)
        losses = F.cross_entropy(model(x.to(device)), y.to(device), reduction="none")
        sums += torch.stack([(losses.double() * counted).sum(), counted.sum().double()])
    dist.all_reduce(sums)
    return (sums[0] / sums[1]).item()
