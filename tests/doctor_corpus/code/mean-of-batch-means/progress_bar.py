# Specimen of mean-of-batch-means over a progress bar: the loop runs over `pbar`, a tqdm of the
# loader; the bar shows a running value each batch and the epoch divides by len(pbar).
import torch.nn as nn
from tqdm import tqdm


def train_epoch(model, train_loader, optimizer):
    criterion = nn.CrossEntropyLoss()
    running = 0.0
    pbar = tqdm(train_loader)
    for step, (images, labels) in enumerate(pbar):
        loss = criterion(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        running += loss.item()
        pbar.set_postfix(loss=running / (step + 1))
    epoch_loss = running / len(pbar)  # finding: mean-of-batch-means
    return epoch_loss
