# Specimen of host-sync-per-step (info) in an evaluation loop on a device passed in: the count
# of correct predictions is read back with .item() each batch.
import torch


@torch.no_grad()
def evaluate(model, loader, device):
    model.eval()
    correct, seen = 0, 0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        predictions = model(images).argmax(dim=1)
        correct += (predictions == labels).sum().item()  # finding: host-sync-per-step
        seen += labels.size(0)
    return correct / seen
