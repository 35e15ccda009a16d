# Clean: a LightningModule on 4 devices that logs torchmetrics objects (self.val_acc,
# self.val_loss), which sum their states across ranks themselves, and logs per step only
# otherwise.
import lightning as L
import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn


class Classifier(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(64, 10)
        self.val_acc = torchmetrics.classification.MulticlassAccuracy(num_classes=10)
        self.val_loss = torchmetrics.MeanMetric()

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train_loss_step", loss, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        self.val_loss.update(F.cross_entropy(logits, y), weight=len(y))
        self.val_acc.update(logits, y)
        self.log("val_acc", self.val_acc)
        self.log("val_loss", self.val_loss)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters())


trainer = L.Trainer(accelerator="gpu", devices=4, strategy="ddp")
