# Specimen of aliased-state with a plain list: each epoch's batch losses are appended to the
# runs as the list itself, then cleared in place for the next epoch; every run ends empty.
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
        runs.append(batch_losses)  # finding: aliased-state
        batch_losses.clear()
    return runs
