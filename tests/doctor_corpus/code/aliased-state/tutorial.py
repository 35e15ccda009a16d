# Specimen of aliased-state in a plain loop: the epoch loss is kept in one device tensor that
# is zeroed in place at the start of every epoch, and the history appends that tensor itself.
# The console prints the right value each epoch; afterwards every entry of the history is the
# same tensor, holding the last epoch's loss (and 0.0 after one more zero_()).
import torch
import torch.nn.functional as F

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def fit(model, train_loader, optimizer, epochs):
    epoch_loss = torch.zeros((), dtype=torch.float64, device=device)
    history = []
    for epoch in range(epochs):
        epoch_loss.zero_()
        seen = 0
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            epoch_loss += loss.detach().double() * x.size(0)
            seen += x.size(0)
        epoch_loss /= seen
        print(f"epoch {epoch}: loss {epoch_loss.item():.4f}")
        history.append(epoch_loss)
    return history
