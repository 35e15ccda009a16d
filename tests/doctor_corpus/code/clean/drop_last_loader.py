# Clean: a mean of batch means is exact when every batch is full, and this DataLoader drops the
# last, partial batch (drop_last=True), so running_loss / len(train_loader) is the per-sample
# mean over the samples trained on.
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

dataset = TensorDataset(torch.randn(5_000, 32), torch.randint(0, 4, (5_000,)))
train_loader = DataLoader(dataset, batch_size=64, shuffle=True, drop_last=True)
model = nn.Linear(32, 4)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
criterion = nn.CrossEntropyLoss()

for epoch in range(5):
    running_loss = 0.0
    for inputs, labels in train_loader:
        loss = criterion(model(inputs), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
    print(f"epoch {epoch}: loss {running_loss / len(train_loader):.4f}")
