# Specimen of mean-of-batch-means with the step in a helper: _run_batch() takes the step and
# returns the batch's mean loss; the epoch adds them and divides by the number of batches.
import torch.nn.functional as F


class Trainer:
    def __init__(self, model, train_data, optimizer):
        self.model, self.train_data, self.optimizer = model, train_data, optimizer

    def _run_batch(self, source, targets):
        self.optimizer.zero_grad()
        loss = F.cross_entropy(self.model(source), targets)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def _run_epoch(self, epoch):
        total = 0.0
        for source, targets in self.train_data:
            total += self._run_batch(source, targets)
        mean = total / len(self.train_data)  # finding: mean-of-batch-means
        print(f"epoch {epoch}: loss {mean:.4f}")
