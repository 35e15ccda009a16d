# Specimen of host-sync-per-step (info) in old PyTorch style: loss.data[0] reads the loss back
# to Python each batch, on a model moved with .cuda().
import torch.nn as nn

criterion = nn.CrossEntropyLoss()


def train(model, loader, optimizer):
    model.cuda()
    running, seen = 0.0, 0
    for inputs, labels in loader:
        inputs, labels = inputs.cuda(), labels.cuda()
        optimizer.zero_grad()
        loss = criterion(model(inputs), labels)
        loss.backward()
        optimizer.step()
        running += loss.data[0] * inputs.size(0)  # finding: host-sync-per-step
        seen += inputs.size(0)
    return running / seen
