# Specimen of mean-of-batch-means with an AverageMeter updated without n: update() defaults to
# n=1, so each batch's mean loss counts once, a short last batch as much as a full one.
import torch.nn as nn


class AverageMeter:
    def __init__(self):
        self.sum, self.count, self.avg = 0.0, 0, 0.0

    def update(self, val, n=1):
        self.sum += val * n
        self.count += n
        self.avg = self.sum / self.count


def validate(val_loader, model, criterion):
    losses = AverageMeter()
    model.eval()
    for images, target in val_loader:
        output = model(images)
        loss = criterion(output, target)
        losses.update(loss.item())
    print(f"validation loss {losses.avg:.4f}")  # finding: mean-of-batch-means
    return losses.avg


def main(model, val_loader):
    criterion = nn.CrossEntropyLoss()
    return validate(val_loader, model, criterion)
