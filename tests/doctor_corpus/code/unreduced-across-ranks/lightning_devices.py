# also: mean-of-batch-means
# Specimen of unreduced-across-ranks in Lightning without a strategy named: devices=4 runs DDP,
# and the epoch-end hook logs the epoch's mean loss with sync_dist=False, so each rank logs its own.
import lightning as L
import torch
import torch.nn.functional as F
from torch import nn


class Regressor(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 1))
        self.outputs = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.mse_loss(self.net(x).squeeze(1), y)
        self.outputs.append(loss.detach())
        return loss

    def on_train_epoch_end(self):
        self.log("train_mse", torch.stack(self.outputs).mean(), sync_dist=False)  # finding: unreduced-across-ranks
        self.outputs.clear()

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters())


trainer = L.Trainer(accelerator="gpu", devices=4, max_epochs=20)
