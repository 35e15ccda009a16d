# Clean twin of aliased-state/list_cleared.py: each epoch appends a copy of the list, so
# clearing it for the next epoch leaves the saved runs as they were.
import torch.nn.functional as F


def fit(model, loader, optimizer, epochs):
    runs, batch_losses = [], []
    for epoch in range(epochs):
        for x, y in loader:
            loss = F.mse_loss(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            batch_losses.append(loss.item() * len(y))
        runs.append(list(batch_losses))
        batch_losses.clear()
    return runs
