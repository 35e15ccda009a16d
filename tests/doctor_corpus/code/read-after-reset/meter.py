# Specimen of read-after-reset with a class-based tracker whose get_metrics() guards against
# division by zero: the loop prints the metrics, resets the tracker, and only then reads the
# metrics for the history, which holds 0.0 for every epoch.
import torch.nn.functional as F


class MetricTracker:
    def __init__(self):
        self.reset()

    def reset(self):
        self.loss_sum = 0.0
        self.total = 0
        self.correct = 0

    def update(self, loss, outputs, labels):
        n = labels.size(0)
        self.loss_sum += float(loss) * n
        self.total += n
        self.correct += int((outputs.argmax(1) == labels).sum())

    def get_metrics(self):
        if self.total == 0:
            return {"loss": 0.0, "acc": 0.0}
        return {"loss": self.loss_sum / self.total, "acc": 100.0 * self.correct / self.total}


def train(model, loader, optimizer, epochs):
    metrics = MetricTracker()
    history = []
    for epoch in range(epochs):
        for x, y in loader:
            outputs = model(x)
            loss = F.cross_entropy(outputs, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            metrics.update(loss, outputs, y)
        print(f"epoch {epoch}: {metrics.get_metrics()}")
        metrics.reset()
        history.append(metrics.get_metrics())
    return history
