# Specimen of mean-of-batch-means in a class-based tracker: update() adds the batch-mean loss
# and counts batches (loss_sum += loss.item(); batches += 1), so get_metrics() returns the
# mean of batch means. Accuracy is counted per sample and is right; only the loss is off.
import torch.nn.functional as F


class MetricsTracker:
    """Running loss and accuracy for one epoch."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.loss_sum = 0.0
        self.batches = 0
        self.correct = 0
        self.samples = 0

    def update(self, loss, outputs, labels):
        self.loss_sum += loss.item()
        self.batches += 1
        self.correct += (outputs.argmax(dim=1) == labels).sum().item()
        self.samples += labels.size(0)

    def get_metrics(self):
        return {
            "loss": self.loss_sum / self.batches,
            "accuracy": 100.0 * self.correct / self.samples,
        }


def train(model, loader, optimizer, epochs, device="cuda"):
    tracker = MetricsTracker()
    history = []
    for epoch in range(epochs):
        tracker.reset()
        model.train()
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            outputs = model(images)
            loss = F.cross_entropy(outputs, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            tracker.update(loss, outputs, labels)
        metrics = tracker.get_metrics()
        history.append(metrics)
        print(f"epoch {epoch}: loss={metrics['loss']:.4f} acc={metrics['accuracy']:.2f}")
    return history
