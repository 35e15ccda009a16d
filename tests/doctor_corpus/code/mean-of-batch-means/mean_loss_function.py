# Specimen of mean-of-batch-means with a loss function of the file: it returns batch means
# (F.mse_loss and .mean() reduce over the batch), yet the epoch divides their sum by the number of
# samples, as if each batch's value were its total.
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

data = TensorDataset(torch.randn(1_000, 20))
loader = DataLoader(data, batch_size=128, shuffle=True)
encoder, decoder = torch.nn.Linear(20, 4), torch.nn.Linear(4, 20)
optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=1e-3)


def reconstruction_loss(x, code):
    return F.mse_loss(decoder(code), x) + 0.01 * code.pow(2).mean()


for epoch in range(5):
    total = 0.0
    for (x,) in loader:
        loss = reconstruction_loss(x, encoder(x))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item()
    print(f"epoch {epoch}: {total / len(loader.dataset):.5f}")  # finding: mean-of-batch-means
