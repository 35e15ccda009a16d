# also: host-sync-per-step
# Specimen of unreduced-across-ranks with Horovod: the validation loss is averaged over the
# workers by hvd.allreduce, but the training loss printed by rank 0 is its own shard's.
import horovod.torch as hvd
import torch
import torch.nn.functional as F
import torch.utils.data.distributed


def metric_average(value, name):
    return hvd.allreduce(torch.tensor(value), name=name).item()


def train_and_validate(model, train_set, val_set, epochs, lr=0.01):
    hvd.init()
    torch.cuda.set_device(hvd.local_rank())
    train_sampler = torch.utils.data.distributed.DistributedSampler(
        train_set, num_replicas=hvd.size(), rank=hvd.rank(), drop_last=True)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=64, sampler=train_sampler)
    val_sampler = torch.utils.data.distributed.DistributedSampler(
        val_set, num_replicas=hvd.size(), rank=hvd.rank(), drop_last=True)
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=500, sampler=val_sampler)
    optimizer = hvd.DistributedOptimizer(torch.optim.SGD(model.parameters(), lr=lr * hvd.size()),
                                         named_parameters=model.named_parameters())
    for epoch in range(epochs):
        model.train()
        train_loss = 0.0
        for data, target in train_loader:
            optimizer.zero_grad()
            loss = F.nll_loss(model(data.cuda()), target.cuda())
            loss.backward()
            optimizer.step()
            train_loss += loss.item() * len(target)
        model.eval()
        val_loss = 0.0
        with torch.no_grad():
            for data, target in val_loader:
                val_loss += F.nll_loss(model(data.cuda()), target.cuda(), reduction="sum").item()
        val_loss = metric_average(val_loss / len(val_sampler), "val_loss")
        if hvd.rank() == 0:
            print(f"epoch {epoch}: train {train_loss / len(train_sampler):.4f} val {val_loss:.4f}")  # finding: unreduced-across-ranks
