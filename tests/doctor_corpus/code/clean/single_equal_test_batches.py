# Clean: MNIST's 10,000 test images in batches of 100: every batch is full, so the mean of the
# batch means is the mean over samples.
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

test_set = datasets.MNIST("data", train=False, download=True, transform=transforms.ToTensor())
test_loader = DataLoader(test_set, batch_size=100)


def test(model):
    model.eval()
    test_loss = 0.0
    with torch.no_grad():
        for data, target in test_loader:
            test_loss += F.nll_loss(model(data), target).item()
    return test_loss / len(test_loader)
