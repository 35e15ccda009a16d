# Clean: under DDP, rank 0 alone evaluates on a plain DataLoader (no distributed sampler), so
# the loss it logs covers the whole validation set; the other ranks wait at the barrier.
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader


@torch.no_grad()
def validate(model, val_set, criterion, device):
    total = torch.zeros((), dtype=torch.float64, device=device)
    for x, y in DataLoader(val_set, batch_size=256):
        total += criterion(model(x.to(device)), y.to(device)).double() * len(y)
    return total / len(val_set)


def after_epoch(model: DDP, val_set, criterion, device, epoch, log):
    if dist.get_rank() == 0:
        log.append({"epoch": epoch, "val_loss": validate(model.module, val_set, criterion, device).item()})
    dist.barrier()
