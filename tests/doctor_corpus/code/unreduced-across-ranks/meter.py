# also: host-sync-per-step
# Specimen of unreduced-across-ranks with the ImageNet example's AverageMeter, without the
# all_reduce the example later added: each rank's meter averages its own shard, and the
# process with rank 0 writes its meter's average as the epoch's loss and accuracy.
import torch
import torch.distributed as dist
import torch.nn.functional as F


class AverageMeter:
    """Computes and stores the average and current value."""

    def __init__(self, name, fmt=":f"):
        self.name = name
        self.fmt = fmt
        self.reset()

    def reset(self):
        self.val = 0
        self.avg = 0
        self.sum = 0
        self.count = 0

    def update(self, val, n=1):
        self.val = val
        self.sum += val * n
        self.count += n
        self.avg = self.sum / self.count


def train(train_loader, model, optimizer, epoch, args, log):
    losses = AverageMeter("Loss", ":.4e")
    top1 = AverageMeter("Acc@1", ":6.2f")
    model.train()
    for images, target in train_loader:
        images = images.cuda(args.gpu, non_blocking=True)
        target = target.cuda(args.gpu, non_blocking=True)
        output = model(images)
        loss = F.cross_entropy(output, target)
        acc1 = (output.argmax(1) == target).float().mean() * 100
        losses.update(loss.item(), images.size(0))
        top1.update(acc1.item(), images.size(0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    if not args.multiprocessing_distributed or args.rank % args.ngpus_per_node == 0:
        log.append({"epoch": epoch, "loss": losses.avg, "acc1": top1.avg})  # finding: unreduced-across-ranks


def main_worker(gpu, ngpus_per_node, args):
    dist.init_process_group(backend="nccl", init_method=args.dist_url, world_size=args.world_size, rank=args.rank)
    model = torch.nn.parallel.DistributedDataParallel(args.arch().cuda(gpu), device_ids=[gpu])
    sampler = torch.utils.data.distributed.DistributedSampler(args.train_dataset)
    loader = torch.utils.data.DataLoader(args.train_dataset, batch_size=args.batch_size, sampler=sampler)
    optimizer = torch.optim.SGD(model.parameters(), args.lr, momentum=0.9)
    log = []
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        train(loader, model, optimizer, epoch, args, log)
