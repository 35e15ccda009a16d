# Specimen of padded-duplicates-counted in a tracker with a sync() method: sums and counts are
# reduced across ranks as they should be, but the sampler pads each shard, and nothing leaves
# the repeated samples out of total.
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
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
        dist.all_reduce(packed)  # finding: padded-duplicates-counted
        self.loss_sum, self.total = packed[0], int(packed[1].item())

    def compute(self):
        return float(self.loss_sum) / self.total


@torch.no_grad()
def validate(model, dataset, criterion, device):
    sampler = DistributedSampler(dataset, shuffle=False)
    tracker = DistributedTracker(device)
    for inputs, labels in DataLoader(dataset, batch_size=100, sampler=sampler):
        tracker.update(criterion(model(inputs.to(device)), labels.to(device)), labels)
    tracker.sync()
    return tracker.compute()
