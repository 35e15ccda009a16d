# Specimen of mean-of-batch-means, the enumerate form: the running mean printed and saved is
# running_loss / (i + 1), and the validation loss is np.mean of a list of batch means.
import numpy as np
import torch


def run_epoch(model, train_dataloader, val_dataloader, criterion, optimizer, history):
    model.train()
    running_loss = 0.0
    for i, (features, targets) in enumerate(train_dataloader):
        optimizer.zero_grad()
        loss = criterion(model(features), targets)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
    history["train_loss"].append(running_loss / (i + 1))

    model.eval()
    val_losses = []
    with torch.no_grad():
        for features, targets in val_dataloader:
            val_losses.append(criterion(model(features), targets).item())
    history["val_loss"].append(float(np.mean(val_losses)))
