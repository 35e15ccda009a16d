# Clean: torchmetrics on the GPU, the loss averaged with MeanMetric and weight= the batch size,
# computed before reset(), and appended as a float.
import torch
import torch.nn.functional as F
from torchmetrics import Accuracy, MeanMetric

device = torch.device("cuda")


def fit(model, train_loader, optimizer, epochs, num_classes):
    train_loss = MeanMetric().to(device)
    train_acc = Accuracy(task="multiclass", num_classes=num_classes).to(device)
    history = {"loss": [], "acc": []}
    for epoch in range(epochs):
        model.train()
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            train_loss.update(loss.detach(), weight=y.size(0))
            train_acc.update(logits, y)
        history["loss"].append(train_loss.compute().item())
        history["acc"].append(train_acc.compute().item())
        train_loss.reset()
        train_acc.reset()
    return history
