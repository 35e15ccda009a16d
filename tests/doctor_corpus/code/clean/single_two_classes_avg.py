# Clean twin of aliased-state/meter.py: one class of the file zeroes its `avg` tensor in place,
# but the history keeps the `avg` of another class, which reset() replaces by a new float.
import torch


class DeviceMeter:
    def __init__(self):
        self.avg = torch.zeros(())

    def reset(self):
        self.avg.zero_()


class EpochMean:
    def __init__(self):
        self.reset()

    def reset(self):
        self.total, self.count, self.avg = 0.0, 0, 0.0

    def update(self, value, n):
        self.total += value * n
        self.count += n
        self.avg = self.total / self.count


def fit(model, loader, optimizer, criterion, epochs):
    mean, history = EpochMean(), []
    for epoch in range(epochs):
        mean.reset()
        for x, y in loader:
            loss = criterion(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            mean.update(loss.item(), len(y))
        history.append(mean.avg)
    return history
