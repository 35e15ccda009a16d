# Specimen of unreduced-across-ranks in Lightning: trained with strategy="ddp" on 4 GPUs, the
# epoch-level losses are logged without sync_dist=True, so each rank aggregates its own
# shard and the value logged (by rank 0) is rank 0's.
import lightning as L
import torch
import torch.nn.functional as F
from torch import nn


class LitResNetHead(L.LightningModule):
    def __init__(self, features: int = 2048, classes: int = 1000):
        super().__init__()
        self.head = nn.Linear(features, classes)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.head(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True, batch_size=y.size(0))  # finding: unreduced-across-ranks
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.head(x)
        self.log("val_loss", F.cross_entropy(logits, y), batch_size=y.size(0))
        self.log("val_acc", (logits.argmax(1) == y).float().mean(), batch_size=y.size(0))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


trainer = L.Trainer(accelerator="gpu", devices=4, strategy="ddp", max_epochs=90)
