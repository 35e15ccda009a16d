# Clean: a loop written for any accelerator (torch.accelerator) whose main process is
# `local_rank in [-1, 0]`; the loss sum and sample count are all_reduced before it saves them,
# and the sampler drops the tail (drop_last=True), so no sample is counted twice.
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
    sampler = DistributedSampler(dataset, drop_last=True)
    loader = DataLoader(dataset, batch_size=128, sampler=sampler)
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    history = {"loss": []}
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        sums = torch.zeros(2, dtype=torch.float64, device=device)
        for x, y in loader:
            loss = criterion(model(x.to(local_rank)), y.to(local_rank))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            sums[0] += loss.detach().double() * len(y)
            sums[1] += len(y)
        dist.all_reduce(sums)
        if local_rank in [-1, 0]:
            history["loss"].append((sums[0] / sums[1]).item())
            torch.save(history, "history.pt")
