# Specimen of read-after-reset with torchmetrics in a plain loop: the accuracy metric is reset
# at the end of the epoch and then computed for the history, so every epoch saves the empty
# metric's value instead of the epoch's accuracy.
import torch
import torch.nn.functional as F
import torchmetrics

device = "cuda"


def fit(model, train_loader, optimizer, epochs, num_classes=10):
    train_acc = torchmetrics.Accuracy(task="multiclass", num_classes=num_classes).to(device)
    history = {"train_acc": [], "train_loss": []}
    for epoch in range(epochs):
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        seen = 0
        for images, labels in train_loader:
            images, labels = images.to(device), labels.to(device)
            logits = model(images)
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach().double() * labels.size(0)
            seen += labels.size(0)
            train_acc.update(logits, labels)
        train_acc.reset()
        history["train_acc"].append(train_acc.compute().item())
        history["train_loss"].append(loss_sum.item() / seen)
    return history
