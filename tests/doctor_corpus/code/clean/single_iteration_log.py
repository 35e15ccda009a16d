# Clean twin of iteration_loop.py: an iteration loop that logs each iteration's own loss and
# aggregates nothing, on the CPU.
import torch

max_iters, log_interval = 500, 50


def get_batch(data, block_size=64, batch_size=12):
    starts = torch.randint(len(data) - block_size, (batch_size,))
    x = torch.stack([data[i:i + block_size] for i in starts])
    y = torch.stack([data[i + 1:i + 1 + block_size] for i in starts])
    return x, y


def train(model, data, optimizer):
    for it in range(max_iters):
        xb, yb = get_batch(data)
        logits, loss = model(xb, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if it % log_interval == 0:
            print(f"iter {it}: loss {loss.item():.4f}")
