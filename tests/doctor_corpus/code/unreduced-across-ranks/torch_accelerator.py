# Specimen of unreduced-across-ranks written for any accelerator (torch.accelerator): the rank
# comes from LOCAL_RANK, the main process is `local_rank in [-1, 0]`, and what it saves is its
# own shard's loss, never reduced.
import os

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler


def main(model, dataset, epochs):
    local_rank = int(os.environ.get("LOCAL_RANK", -1))
    device = torch.accelerator.current_accelerator()
    dist.init_process_group(backend=dist.get_default_backend_for_device(device))
    model = torch.nn.parallel.DistributedDataParallel(model.to(local_rank))
    sampler = DistributedSampler(dataset)
    loader = DataLoader(dataset, batch_size=128, sampler=sampler)
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    history = {"loss": []}
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        summed = torch.zeros((), device=device)
        samples = 0
        for x, y in loader:
            loss = criterion(model(x.to(local_rank)), y.to(local_rank))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            summed += loss.detach() * len(y)
            samples += len(y)
        if local_rank in [-1, 0]:
            history["loss"].append(summed.item() / samples)  # finding: unreduced-across-ranks
            torch.save(history, "history.pt")
