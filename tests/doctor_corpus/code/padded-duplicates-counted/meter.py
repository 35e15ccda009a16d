# Specimen of padded-duplicates-counted in a tracker with a sync() method: sums and counts are
# reduced across ranks as they should be, but the sampler pads each shard, and nothing leaves
# the repeated samples out of total.
import torch
import torch.distributed as dist
from torch.utils.data.distributed import DistributedSampler


class DistributedTracker:
    def __init__(self, device):
        self.device = device
        self.reset()

    def reset(self):
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.total = 0

    def update(self, loss, labels):
        self.loss_sum += loss.detach().double() * labels.size(0)
        self.total += labels.size(0)

    def sync(self):
        packed = torch.stack([self.loss_sum, torch.tensor(float(self.total), dtype=torch.float64,
                                                          device=self.device)])
        dist.all_reduce(packed)
        self.loss_sum, self.total = packed[0], int(packed[1].item())

    def compute(self):
        return float(self.loss_sum) / self.total


def make_sampler(dataset, world_size, rank):
    return DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=False)
