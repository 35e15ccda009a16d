# Specimen of mean-of-batch-means in an iteration loop: `range(max_iters)` with next_batch()
# inside, and the loss of each batch averaged over the iterations.
import torch
from torch.utils.data import DataLoader

max_iters = 500


def train(model, dataset, optimizer):
    loader = DataLoader(dataset, batch_size=48, shuffle=True)
    batches = iter(loader)

    def next_batch():
        nonlocal batches
        try:
            return next(batches)
        except StopIteration:
            batches = iter(loader)
            return next(batches)

    train_loss = 0.0
    for it in range(max_iters):
        xb, yb = next_batch()
        logits, loss = model(xb, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        train_loss += loss.item()
    return train_loss / max_iters  # finding: mean-of-batch-means


if __name__ == "__main__":
    print(torch.__version__)
