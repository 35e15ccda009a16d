# Clean twin of metric_logger.py: the loss goes to its SmoothedValue with n, the batch's size.
from collections import defaultdict


class SmoothedValue:
    def __init__(self):
        self.total, self.count = 0.0, 0

    def update(self, value, n=1):
        self.total += value * n
        self.count += n

    @property
    def global_avg(self):
        return self.total / self.count


class MetricLogger:
    def __init__(self):
        self.meters = defaultdict(SmoothedValue)


def train_one_epoch(model, criterion, data_loader, optimizer):
    metric_logger = MetricLogger()
    for samples, targets in data_loader:
        loss = criterion(model(samples), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        metric_logger.meters["loss"].update(loss.item(), n=samples.shape[0])
    return {name: meter.global_avg for name, meter in metric_logger.meters.items()}
