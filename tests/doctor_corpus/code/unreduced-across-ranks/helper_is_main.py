# Specimen of unreduced-across-ranks behind a helper of the file: is_main_process() returns a
# rank test, and the evaluation's accuracy counted on this rank's shard is logged to TensorBoard.
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from torch.utils.tensorboard import SummaryWriter


def is_main_process():
    return not dist.is_initialized() or dist.get_rank() == 0


@torch.no_grad()
def evaluate(model, val_set, epoch, writer: SummaryWriter):
    loader = DataLoader(val_set, batch_size=256, sampler=DistributedSampler(val_set, shuffle=False))
    correct = torch.zeros((), dtype=torch.int64, device="cuda")
    seen = 0
    for images, labels in loader:
        logits = model(images.cuda())
        correct += (logits.argmax(1) == labels.cuda()).sum()
        seen += labels.shape[0]
    if is_main_process():
        writer.add_scalar("val/acc", correct.item() / seen, epoch)  # finding: unreduced-across-ranks
