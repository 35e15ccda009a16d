# Clean twin of average_meter.py: update() is given n, the batch's size.
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
        losses.update(loss.item(), images.size(0))
    print(f"validation loss {losses.avg:.4f}")
    return losses.avg


def main(model, val_loader):
    criterion = nn.CrossEntropyLoss()
    return validate(val_loader, model, criterion)
