# Specimen of mean-of-batch-means with a running print every log_interval batches: the finding
# belongs to the epoch's division after the loop, not to the print.
import torch.nn.functional as F

log_interval = 100


def train(model, train_loader, optimizer, epoch):
    running_loss = 0.0
    for batch_idx, (data, target) in enumerate(train_loader):
        optimizer.zero_grad()
        loss = F.nll_loss(model(data), target)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
        if batch_idx % log_interval == 0:
            print(f"epoch {epoch} [{batch_idx}] running loss {running_loss / (batch_idx + 1):.4f}")
    epoch_loss = running_loss / len(train_loader)  # finding: mean-of-batch-means
    return epoch_loss
