# Clean: torchmetrics metrics updated per batch on each rank's shard; compute() sums their
# states across ranks before rank 0 logs, and the sampler drops the tail (drop_last=True).
import torch
import torch.distributed as dist
import torch.nn.functional as F
import torchmetrics
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler


@torch.no_grad()
def validate(model, val_set, epoch, device, log):
    loss_mean = torchmetrics.MeanMetric().to(device)
    accuracy = torchmetrics.Accuracy(task="multiclass", num_classes=10).to(device)
    for x, y in DataLoader(val_set, batch_size=256, sampler=DistributedSampler(val_set, drop_last=True)):
        logits = model(x.to(device))
        loss_mean.update(F.cross_entropy(logits, y.to(device)), weight=len(y))
        accuracy.update(logits, y.to(device))
    val_loss, val_acc = loss_mean.compute(), accuracy.compute()
    if dist.get_rank() == 0:
        log.append({"epoch": epoch, "val_loss": val_loss.item(), "val_acc": val_acc.item()})
