# Clean twin of loss_dict.py: each entry of the dict of losses is weighted by the batch's size
# and divided by the number of samples seen.
import torch.nn.functional as F


def train_one_epoch(model, loader, optimizer):
    epoch_metrics, seen = {"cls": 0.0, "box": 0.0}, 0
    for images, boxes, labels in loader:
        scores, deltas = model(images)
        loss_dict = {"cls": F.cross_entropy(scores, labels), "box": F.smooth_l1_loss(deltas, boxes)}
        total = sum(loss_dict.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        for key, value in loss_dict.items():
            epoch_metrics[key] += value.item() * len(labels)
        seen += len(labels)
    return {key: value / seen for key, value in epoch_metrics.items()}
