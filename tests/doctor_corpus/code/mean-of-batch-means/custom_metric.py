# Specimen of mean-of-batch-means in a small Metric class: update() adds the value it is given
# and counts one, so compute() is a mean over updates, here one per batch.
class Mean:
    """A running mean of the values it is given."""

    def __init__(self):
        self.sum, self.n = 0.0, 0

    def update(self, val):
        self.sum += val
        self.n += 1

    def compute(self):
        return self.sum / self.n  # finding: mean-of-batch-means


def train(model, loader, optimizer, criterion, epochs):
    for epoch in range(epochs):
        metric = Mean()
        for x, y in loader:
            loss = criterion(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            metric.update(loss.item())
        print(f"epoch {epoch}: loss {metric.compute():.4f}")
