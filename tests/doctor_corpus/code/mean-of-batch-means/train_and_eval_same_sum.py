# Specimen of mean-of-batch-means in the style of many sequence-model tutorials: `train` and
# `evaluate` each keep their own `epoch_loss`, a sum of batch means, and divide it by the number
# of batches. Each function's division is its own epoch value.
import torch
import torch.nn as nn


def train(model, iterator, optimizer, criterion):
    model.train()
    epoch_loss = 0
    for batch in iterator:
        optimizer.zero_grad()
        loss = criterion(model(batch.text), batch.label)
        loss.backward()
        optimizer.step()
        epoch_loss += loss.item()
    return epoch_loss / len(iterator)  # finding: mean-of-batch-means


def evaluate(model, iterator, criterion):
    model.eval()
    epoch_loss = 0
    with torch.no_grad():
        for batch in iterator:
            loss = criterion(model(batch.text), batch.label)
            epoch_loss += loss.item()
    return epoch_loss / len(iterator)  # finding: mean-of-batch-means


def fit(model, train_iter, valid_iter, epochs=5):
    optimizer = torch.optim.Adam(model.parameters())
    criterion = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        print(epoch, train(model, train_iter, optimizer, criterion), evaluate(model, valid_iter, criterion))
