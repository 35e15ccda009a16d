# Specimen of half-precision-accumulator: the model is converted with .half() and the loss is
# added to total_loss without .item(), so total_loss becomes a float16 tensor.
import torch
import torch.nn as nn


def evaluate(model_fn, loader, device="cuda"):
    model = model_fn().half().to(device)
    model.eval()
    criterion = nn.MSELoss(reduction="sum")
    total_loss, count = 0.0, 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device).half(), y.to(device).half()
            total_loss += criterion(model(x), y)
            count += x.size(0)
    return total_loss / count
