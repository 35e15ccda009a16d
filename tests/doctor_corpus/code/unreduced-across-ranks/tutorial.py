# also: host-sync-per-step
# Specimen of unreduced-across-ranks in a torchrun script: every rank trains on its own shard
# (DistributedSampler) and sums its own loss exactly, but only rank 0 prints and saves, and
# nothing ever combines the ranks' sums. The saved loss is rank 0's shard, 1/world_size of it.
import json
import os

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler


def main():
    dist.init_process_group("nccl")
    rank = dist.get_rank()
    local_rank = int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local_rank)
    device = torch.device("cuda", local_rank)

    dataset = TensorDataset(torch.randn(100_000, 128), torch.randint(0, 100, (100_000,)))
    sampler = DistributedSampler(dataset, shuffle=True)
    loader = DataLoader(dataset, batch_size=256, sampler=sampler, num_workers=4, pin_memory=True)

    model = DDP(nn.Sequential(nn.Linear(128, 512), nn.ReLU(), nn.Linear(512, 100)).to(device),
                device_ids=[local_rank])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    criterion = nn.CrossEntropyLoss()
    history = {"train_loss": []}

    for epoch in range(30):
        sampler.set_epoch(epoch)
        loss_sum, seen = 0.0, 0
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = criterion(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * x.size(0)
            seen += x.size(0)
        epoch_loss = loss_sum / seen
        if rank == 0:
            print(f"epoch {epoch}: loss {epoch_loss:.4f}")  # finding: unreduced-across-ranks
            history["train_loss"].append(epoch_loss)

    if rank == 0:
        with open("history.json", "w") as f:
            json.dump(history, f)  # finding: unreduced-across-ranks
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
