# Specimen of mean-of-batch-means in the MetricLogger style: update(loss=...) hands each value
# to a SmoothedValue without n, so each batch counts once whatever its size.
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

    def update(self, **kwargs):
        for name, value in kwargs.items():
            self.meters[name].update(value)


def train_one_epoch(model, criterion, data_loader, optimizer):
    metric_logger = MetricLogger()
    for samples, targets in data_loader:
        loss = criterion(model(samples), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        metric_logger.update(loss=loss.item(), lr=optimizer.param_groups[0]["lr"])
    return {name: meter.global_avg for name, meter in metric_logger.meters.items()}  # finding: mean-of-batch-means
