# Clean: a synthetic data set of 2,048 rows in batches of 64: 32 full batches, so the mean of
# the batch means is the mean over rows.
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

N_ROWS, BATCH = 2048, 64
features = torch.randn(N_ROWS, 20)
dataset = TensorDataset(features, features.sum(dim=1, keepdim=True))
loader = DataLoader(dataset, batch_size=BATCH, shuffle=True)
model = nn.Linear(20, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
criterion = nn.MSELoss()

for epoch in range(5):
    epoch_loss = 0.0
    for i, (x, y) in enumerate(loader):
        loss = criterion(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        epoch_loss += loss.item()
    print(f"epoch {epoch}: mse {epoch_loss / len(loader):.4f}")
