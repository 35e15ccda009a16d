# Clean: Horovod's test loop with a drop_last=True sampler (no repeats), a loss summed per
# sample and divided by the sampler's length, then averaged over the workers by hvd.allreduce
# (its default op is the average) before rank 0 prints it.
import horovod.torch as hvd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler


def metric_average(value, name):
    return hvd.allreduce(torch.tensor(value), name=name).item()


def test(model, test_dataset):
    hvd.init()
    test_sampler = DistributedSampler(test_dataset, num_replicas=hvd.size(), rank=hvd.rank(), drop_last=True)
    test_loader = DataLoader(test_dataset, batch_size=1000, sampler=test_sampler)
    model.eval()
    test_loss = 0.0
    with torch.no_grad():
        for data, target in test_loader:
            test_loss += F.nll_loss(model(data), target, reduction="sum")
    test_loss = metric_average(float(test_loss) / len(test_sampler), "avg_loss")
    if hvd.rank() == 0:
        print(f"Test set: average loss {test_loss:.4f}")
