# Clean: an AverageMeter whose device tensors are zeroed in place by reset(), read once per
# epoch with .item() (a Python float) before the reset, so the history keeps the values.
import torch
import torch.nn.functional as F


class AverageMeter:
    def __init__(self, device):
        self.sum = torch.zeros((), dtype=torch.float64, device=device)
        self.count = torch.zeros((), dtype=torch.int64, device=device)

    def reset(self):
        self.sum.zero_()
        self.count.zero_()

    def update(self, val, n=1):
        self.sum += val.detach().double() * n
        self.count += n

    @property
    def avg(self):
        return self.sum / self.count


def train(model, loader, optimizer, epochs, device="cuda"):
    losses = AverageMeter(device)
    history = {"train_loss": []}
    for epoch in range(epochs):
        losses.reset()
        for images, target in loader:
            images, target = images.to(device), target.to(device)
            loss = F.cross_entropy(model(images), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.update(loss, images.size(0))
        history["train_loss"].append(losses.avg.item())
    return history
