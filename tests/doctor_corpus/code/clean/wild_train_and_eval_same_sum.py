# Clean twin of train_and_eval_same_sum.py: both functions weigh each batch's mean loss by the
# batch's size and divide by the number of samples they saw.
import torch
import torch.nn as nn


def train(model, iterator, optimizer, criterion):
    model.train()
    epoch_loss, seen = 0.0, 0
    for batch in iterator:
        optimizer.zero_grad()
        loss = criterion(model(batch.text), batch.label)
        loss.backward()
        optimizer.step()
        epoch_loss += loss.item() * len(batch.label)
        seen += len(batch.label)
    return epoch_loss / seen


def evaluate(model, iterator, criterion):
    model.eval()
    epoch_loss, seen = 0.0, 0
    with torch.no_grad():
        for batch in iterator:
            loss = criterion(model(batch.text), batch.label)
            epoch_loss += loss.item() * len(batch.label)
            seen += len(batch.label)
    return epoch_loss / seen


def fit(model, train_iter, valid_iter, epochs=5):
    optimizer = torch.optim.Adam(model.parameters())
    criterion = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        print(epoch, train(model, train_iter, optimizer, criterion), evaluate(model, valid_iter, criterion))
