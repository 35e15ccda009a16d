# Specimen of mean-of-batch-means with a MetricLogger from another module: the keyword update
# gives no weight, so the epoch's loss is a mean over batches.
# also: host-sync-per-step
import math
import sys

import utils


def train_one_epoch(model, criterion, data_loader, optimizer, device, epoch):
    model.train()
    metric_logger = utils.MetricLogger(delimiter="  ")
    for samples, targets in metric_logger.log_every(data_loader, 10, f"Epoch: [{epoch}]"):
        samples, targets = samples.to(device), targets.to(device)
        loss = criterion(model(samples), targets)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            sys.exit(1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        metric_logger.update(loss=loss_value)
    return {k: meter.global_avg for k, meter in metric_logger.meters.items()}  # finding: mean-of-batch-means
