# Specimen of host-sync-per-step (info) with the ImageNet example's AverageMeter: the update is
# weighted by batch size, so the epoch averages are exact, but loss.item() and acc1.item() are
# read on the host for every batch.
import torch.nn.functional as F


class AverageMeter:
    def __init__(self, name):
        self.name = name
        self.reset()

    def reset(self):
        self.val = 0.0
        self.sum = 0.0
        self.count = 0
        self.avg = 0.0

    def update(self, val, n=1):
        self.val = val
        self.sum += val * n
        self.count += n
        self.avg = self.sum / self.count


def train(train_loader, model, optimizer, gpu):
    losses, top1 = AverageMeter("Loss"), AverageMeter("Acc@1")
    model.train()
    for i, (images, target) in enumerate(train_loader):
        images, target = images.cuda(gpu, non_blocking=True), target.cuda(gpu, non_blocking=True)
        output = model(images)
        loss = F.cross_entropy(output, target)
        acc1 = (output.argmax(1) == target).float().mean() * 100
        losses.update(loss.item(), images.size(0))
        top1.update(acc1.item(), images.size(0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i % 100 == 0:
            print(f"[{i}/{len(train_loader)}] loss {losses.val:.4f} ({losses.avg:.4f})")
    return losses.avg, top1.avg
