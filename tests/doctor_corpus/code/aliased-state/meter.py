# Specimen of aliased-state in an AverageMeter kept on the device: reset() zeroes sum, count and
# avg in place, and the loop appends meter.avg (the tensor) to the history, then resets the
# meter for the next epoch. Every history entry is the same tensor: all 0.0 at the end.
import torch
import torch.nn.functional as F


class AverageMeter:
    """Computes and stores the average and current value, without syncing with the host."""

    def __init__(self, name, device):
        self.name = name
        self.sum = torch.zeros((), dtype=torch.float64, device=device)
        self.count = torch.zeros((), dtype=torch.int64, device=device)
        self.avg = torch.zeros((), dtype=torch.float64, device=device)

    def reset(self):
        self.sum.zero_()
        self.count.zero_()
        self.avg.zero_()

    def update(self, val, n=1):
        self.sum += val.detach().double() * n
        self.count += n
        torch.div(self.sum, self.count, out=self.avg)


def train(model, loader, optimizer, epochs, device="cuda"):
    losses = AverageMeter("Loss", device)
    history = {"train_loss": []}
    for epoch in range(epochs):
        for images, target in loader:
            images, target = images.to(device), target.to(device)
            loss = F.cross_entropy(model(images), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.update(loss, images.size(0))
        history["train_loss"].append(losses.avg)
        losses.reset()
    return history
