# Specimen of mean-of-batch-means: `.sum()` of a loss that the module already reduced to the batch
# mean is that same mean, not the batch's total; summed per batch and divided by the number of
# samples, the epoch value is about batch-size times too small.
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

pairs = TensorDataset(torch.randn(1_000, 2, 16), torch.randint(0, 2, (1_000,)).float())
test_loader = DataLoader(pairs, batch_size=64)
model = nn.Sequential(nn.Flatten(), nn.Linear(32, 1), nn.Sigmoid())
criterion = nn.BCELoss()


def test():
    model.eval()
    test_loss = 0.0
    with torch.no_grad():
        for pair, same in test_loader:
            score = model(pair).squeeze(1)
            test_loss += criterion(score, same).sum().item()
    test_loss /= len(test_loader.dataset)  # finding: mean-of-batch-means
    return test_loss


print(f"test loss {test():.4f}")
