# Specimen of mean-of-batch-means with a step function made by a factory: each call returns the
# batch's mean loss, and the epoch's loss is the mean of that list.
import numpy as np


def make_train_step_fn(model, loss_fn, optimizer):
    def perform_train_step_fn(x, y):
        model.train()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return loss.item()

    return perform_train_step_fn


def mini_batch(data_loader, step_fn):
    mini_batch_losses = []
    for x_batch, y_batch in data_loader:
        mini_batch_losses.append(step_fn(x_batch, y_batch))
    return np.mean(mini_batch_losses)  # finding: mean-of-batch-means


def fit(model, loss_fn, optimizer, train_loader, epochs):
    train_step_fn = make_train_step_fn(model, loss_fn, optimizer)
    return [mini_batch(train_loader, train_step_fn) for _ in range(epochs)]
