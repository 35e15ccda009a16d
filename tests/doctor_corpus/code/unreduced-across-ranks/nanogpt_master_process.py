# also: host-sync-per-step
# Specimen of unreduced-across-ranks in a nanoGPT-style loop: no loader, a fixed number of
# iterations with get_batch(); master_process is a flag assigned from the rank test, and the
# loss averaged over the interval is the master's batches only.
import os

import torch
from torch.distributed import init_process_group
from torch.nn.parallel import DistributedDataParallel as DDP

init_process_group(backend="nccl")
ddp_rank = int(os.environ["RANK"])
master_process = ddp_rank == 0


def get_batch(data, block_size=256, batch_size=12):
    ix = torch.randint(len(data) - block_size, (batch_size,))
    x = torch.stack([data[i:i + block_size] for i in ix])
    y = torch.stack([data[i + 1:i + 1 + block_size] for i in ix])
    return x.cuda(), y.cuda()


def train(model, data, max_iters, eval_interval=500):
    model = DDP(model.cuda())
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-4)
    for start in range(0, max_iters, eval_interval):
        interval_loss = 0.0
        for it in range(eval_interval):
            x, y = get_batch(data)
            _, loss = model(x, y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            interval_loss += loss.item() * len(y)
        if master_process:
            print(f"iter {start + eval_interval}: loss {interval_loss / (eval_interval * 12):.4f}")  # finding: unreduced-across-ranks
