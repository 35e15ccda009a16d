# Specimen of padded-duplicates-counted with Horovod: the test loss is summed per sample,
# divided by len(test_sampler) (the per-rank length, padding repeats included) and averaged
# over the workers with hvd.allreduce; the padded repeats are counted in both.
import horovod.torch as hvd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler


def test(model, test_dataset):
    test_sampler = DistributedSampler(test_dataset, num_replicas=hvd.size(), rank=hvd.rank())
    test_loader = DataLoader(test_dataset, batch_size=1000, sampler=test_sampler)
    model.eval()
    test_loss = 0.0
    with torch.no_grad():
        for data, target in test_loader:
            output = model(data)
            test_loss += F.nll_loss(output, target, reduction="sum").item()
    test_loss /= len(test_sampler)  # finding: padded-duplicates-counted
    test_loss = hvd.allreduce(torch.tensor(test_loss), name="avg_loss").item()  # finding: padded-duplicates-counted
    if hvd.rank() == 0:
        print(f"Test set: average loss {test_loss:.4f}")
