# Clean: a CPU loop that adds loss.item() * n and divides by the sample count. On a CPU,
# .item() costs no device sync, so there is nothing to report at all.
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
x = torch.randn(1_000, 8)
y = x @ torch.randn(8, 1) + 0.1 * torch.randn(1_000, 1)
loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
model = nn.Linear(8, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
criterion = nn.MSELoss()

history = []
for epoch in range(20):
    loss_sum, n_samples = 0.0, 0
    for xb, yb in loader:
        loss = criterion(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        n = xb.size(0)
        loss_sum += loss.item() * n
        n_samples += n
    history.append(loss_sum / n_samples)
    print(f"epoch {epoch}: mse {history[-1]:.5f}")
