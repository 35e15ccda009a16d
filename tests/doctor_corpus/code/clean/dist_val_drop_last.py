# Clean: the training sampler pads (drop_last is left False), but the metrics that are reduced
# and saved come from the validation loop, whose sampler drops the tail (drop_last=True): the
# all_reduce sums no repeats. The training loop only prints its batch loss while it runs.
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler


class SumMeter:
    def __init__(self, device):
        self.sums = torch.zeros(2, dtype=torch.float64, device=device)

    def update(self, value, n):
        self.sums += torch.stack([value.double() * n, torch.tensor(n, dtype=torch.float64, device=value.device)])

    def all_reduce(self):
        dist.all_reduce(self.sums)

    @property
    def avg(self):
        return (self.sums[0] / self.sums[1]).item()


def fit(model, train_set, val_set, loss_fn, optimizer, device, epochs, rank):
    train_sampler = DistributedSampler(train_set)
    train_loader = DataLoader(train_set, batch_size=64, sampler=train_sampler)
    val_loader = DataLoader(val_set, batch_size=64, sampler=DistributedSampler(val_set, drop_last=True))
    history = []
    for epoch in range(epochs):
        train_sampler.set_epoch(epoch)
        for step, (x, y) in enumerate(train_loader):
            loss = loss_fn(model(x.to(device)), y.to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if rank == 0 and step % 100 == 0:
                print(f"step {step}: batch loss {loss.detach()}")
        val_loss = SumMeter(device)
        with torch.no_grad():
            for x, y in val_loader:
                val_loss.update(loss_fn(model(x.to(device)), y.to(device)), len(y))
        val_loss.all_reduce()
        if rank == 0:
            history.append({"epoch": epoch, "val_loss": val_loss.avg})
    return history
