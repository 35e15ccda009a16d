# Clean: a torchrun loop that all_reduces the float64 loss sum and the int64 sample count (not
# the means) before rank 0 logs, with drop_last=True on the DistributedSampler so no shard
# is padded with repeats.
import os

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler


def train(dataset, make_model, epochs=10):
    dist.init_process_group("nccl")
    rank, local_rank = dist.get_rank(), int(os.environ["LOCAL_RANK"])
    device = torch.device("cuda", local_rank)
    sampler = DistributedSampler(dataset, shuffle=True, drop_last=True)
    loader = DataLoader(dataset, batch_size=128, sampler=sampler)
    model = DDP(make_model().to(device), device_ids=[local_rank])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    criterion = nn.CrossEntropyLoss()
    history = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        count = torch.zeros((), dtype=torch.int64, device=device)
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = criterion(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach().double() * y.size(0)
            count += y.size(0)
        dist.all_reduce(loss_sum)
        dist.all_reduce(count)
        epoch_loss = loss_sum.item() / count.item()
        if rank == 0:
            print(f"epoch {epoch}: loss {epoch_loss:.4f} over {count.item()} samples")
            history.append(epoch_loss)
    dist.destroy_process_group()
    return history
