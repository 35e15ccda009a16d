# Clean twin of mean_loss_function.py: the file's loss function sums over the batch
# (reduction="sum", torch.sum), so the epoch's sum divided by the number of samples is the mean.
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

data = TensorDataset(torch.randn(1_000, 20))
loader = DataLoader(data, batch_size=128, shuffle=True)
encoder, decoder = torch.nn.Linear(20, 4), torch.nn.Linear(4, 20)
optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=1e-3)


def reconstruction_loss(x, code):
    return F.mse_loss(decoder(code), x, reduction="sum") + 0.01 * torch.sum(code.pow(2))


for epoch in range(5):
    total = 0.0
    for (x,) in loader:
        loss = reconstruction_loss(x, encoder(x))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item()
    print(f"epoch {epoch}: {total / len(loader.dataset):.5f}")
