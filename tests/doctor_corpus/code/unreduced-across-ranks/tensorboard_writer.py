# Specimen of unreduced-across-ranks through a writer that only rank 0 creates: the epoch's
# accuracy, counted over this rank's shard while a tqdm bar runs, goes to TensorBoard unreduced.
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm


def evaluate_epochs(model, val_set, epochs, device):
    rank = dist.get_rank()
    writer = SummaryWriter("runs/eval") if rank == 0 else None
    loader = DataLoader(val_set, batch_size=500, sampler=DistributedSampler(val_set, drop_last=True))
    for epoch in range(epochs):
        hits = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        pbar = tqdm(loader, disable=rank != 0)
        with torch.no_grad():
            for images, labels in pbar:
                hits += (model(images.to(device)).argmax(1) == labels.to(device)).sum()
                seen += len(labels)
        if writer is not None:
            writer.add_scalar("val/accuracy", hits.item() / seen, epoch)  # finding: unreduced-across-ranks
