# Specimen of mean-of-batch-means in Lightning 1.x style: training_epoch_end receives the
# outputs of every training_step and averages their "loss" entries, one per batch.
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn


class LitRegressor(pl.LightningModule):
    def __init__(self, in_features: int = 16):
        super().__init__()
        self.model = nn.Sequential(nn.Linear(in_features, 64), nn.ReLU(), nn.Linear(64, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.mse_loss(self.model(x).squeeze(-1), y)
        return {"loss": loss}

    def training_epoch_end(self, outputs):
        avg_loss = torch.stack([x["loss"] for x in outputs]).mean()
        self.log("train_loss_epoch", avg_loss)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


trainer = pl.Trainer(max_epochs=20, gpus=0)
