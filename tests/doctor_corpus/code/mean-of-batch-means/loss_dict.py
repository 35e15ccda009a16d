# Specimen of mean-of-batch-means with a dict of losses: each entry's batch mean is added as
# it is, then every entry is divided by the number of batches.
import torch.nn.functional as F


def train_one_epoch(model, loader, optimizer):
    epoch_metrics = {"cls": 0.0, "box": 0.0}
    for images, boxes, labels in loader:
        scores, deltas = model(images)
        loss_dict = {"cls": F.cross_entropy(scores, labels), "box": F.smooth_l1_loss(deltas, boxes)}
        total = sum(loss_dict.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        for key, value in loss_dict.items():
            epoch_metrics[key] += value.item()
    return {key: value / len(loader) for key, value in epoch_metrics.items()}  # finding: mean-of-batch-means
