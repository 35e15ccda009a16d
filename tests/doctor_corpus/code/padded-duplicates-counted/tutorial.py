# Specimen of padded-duplicates-counted in a torchrun evaluation loop: the sums and counts are
# all_reduced exactly, but DistributedSampler (drop_last=False, the default) pads every shard
# with repeats, so 10,000 samples on 3 ranks are counted as 10,002.
import os

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler


@torch.no_grad()
def evaluate(model, val_set, criterion, batch_size=100):
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    sampler = DistributedSampler(val_set, shuffle=False)
    loader = DataLoader(val_set, batch_size=batch_size, sampler=sampler)
    stats = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, samples
    model.eval()
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        outputs = model(images)
        n = labels.size(0)
        stats[0] += criterion(outputs, labels).double() * n
        stats[1] += (outputs.argmax(1) == labels).sum()
        stats[2] += n
    dist.all_reduce(stats, op=dist.ReduceOp.SUM)  # finding: padded-duplicates-counted
    loss_sum, correct, samples = stats.tolist()
    if dist.get_rank() == 0:
        print(f"val loss {loss_sum / samples:.4f}, acc {100 * correct / samples:.2f}% on {int(samples)} samples")
    return loss_sum / samples, correct / samples
