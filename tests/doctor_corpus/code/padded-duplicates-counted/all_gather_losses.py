# Specimen of padded-duplicates-counted with per-sample losses gathered into one tensor
# (all_gather_into_tensor) on a device from torch.accelerator: every rank's shard was padded by
# the DistributedSampler, so the gathered tensor holds the repeats and its mean counts them.
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler


@torch.no_grad()
def per_sample_eval(model, dataset, world_size, rank):
    device = torch.accelerator.current_accelerator()
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=False)
    losses = []
    for x, y in DataLoader(dataset, batch_size=50, sampler=sampler, drop_last=True):
        losses.append(F.cross_entropy(model(x.to(device)), y.to(device), reduction="none"))
    mine = torch.cat(losses)
    everyone = torch.empty(world_size * mine.numel(), device=device)
    dist.all_gather_into_tensor(everyone, mine)  # finding: padded-duplicates-counted
    return everyone.mean().item()
