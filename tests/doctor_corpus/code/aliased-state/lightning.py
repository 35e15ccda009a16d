# Specimen of aliased-state in a LightningModule: the per-step losses of an epoch are kept in a
# list for a plot, the epoch's list is appended to loss_curves as it is, and then cleared in
# place for the next epoch. Every curve kept is the same list, empty at the end.
import lightning as L
import torch
import torch.nn.functional as F
from torch import nn


class LitAutoEncoder(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(28 * 28, 64), nn.ReLU(), nn.Linear(64, 3))
        self.decoder = nn.Sequential(nn.Linear(3, 64), nn.ReLU(), nn.Linear(64, 28 * 28))
        self.step_losses = []
        self.loss_curves = []

    def training_step(self, batch, batch_idx):
        x, _ = batch
        x = x.view(x.size(0), -1)
        loss = F.mse_loss(self.decoder(self.encoder(x)), x)
        self.log("train_loss", loss, on_epoch=True, batch_size=x.size(0))
        self.step_losses.append(loss.detach())
        return loss

    def on_train_epoch_end(self):
        self.loss_curves.append(self.step_losses)
        self.step_losses.clear()

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


trainer = L.Trainer(max_epochs=5, accelerator="cpu")
