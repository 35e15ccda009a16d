# Specimen of half-precision-accumulator in a tracker: the loss sum is made on the first batch
# with torch.zeros_like(outputs[0, 0]), "so it lands on the right device". Under autocast the
# outputs are float16, so the sum is float16 too, although the loss itself is float32.
import torch
import torch.nn.functional as F


class EpochTracker:
    """Sample-weighted epoch loss and top-1 accuracy, kept on the device."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.loss_sum = None
        self.correct = None
        self.total = 0

    def update(self, loss, outputs, labels):
        if self.loss_sum is None:
            self.loss_sum = torch.zeros_like(outputs[0, 0])
            self.correct = torch.zeros((), dtype=torch.int64, device=outputs.device)
        n = labels.size(0)
        self.loss_sum += loss.detach() * n
        self.correct += (outputs.argmax(1) == labels).sum()
        self.total += n

    def compute(self):
        return {"loss": float(self.loss_sum) / self.total, "top1": 100.0 * float(self.correct) / self.total}


def train_epoch(model, loader, optimizer, scaler, tracker):
    tracker.reset()
    for images, labels in loader:
        images, labels = images.cuda(non_blocking=True), labels.cuda(non_blocking=True)
        with torch.autocast("cuda", dtype=torch.float16):
            outputs = model(images)
            loss = F.cross_entropy(outputs, labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        tracker.update(loss, outputs, labels)
    return tracker.compute()
