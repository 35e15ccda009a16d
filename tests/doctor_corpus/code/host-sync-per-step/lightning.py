# Specimen of host-sync-per-step (info) in Lightning on a GPU: training_step logs loss.item(),
# a Python float, so every step waits for the GPU. Logging the tensor itself avoids it.
import lightning as L
import torch
import torch.nn.functional as F
from torch import nn


class LitMLP(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.layers(x.view(x.size(0), -1)), y)
        self.log("train_loss", loss.item(), on_epoch=True, batch_size=x.size(0))
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


trainer = L.Trainer(accelerator="gpu", devices=1, max_epochs=10)
