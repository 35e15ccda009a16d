# Clean twin of helper_step.py: _run_batch() returns the batch's summed loss and its size.
import torch.nn.functional as F


class Trainer:
    def __init__(self, model, train_data, optimizer):
        self.model, self.train_data, self.optimizer = model, train_data, optimizer

    def _run_batch(self, source, targets):
        self.optimizer.zero_grad()
        loss = F.cross_entropy(self.model(source), targets)
        loss.backward()
        self.optimizer.step()
        return loss.item() * len(targets), len(targets)

    def _run_epoch(self, epoch):
        total, seen = 0.0, 0
        for source, targets in self.train_data:
            batch_sum, n = self._run_batch(source, targets)
            total += batch_sum
            seen += n
        print(f"epoch {epoch}: loss {total / seen:.4f}")
