# Specimen of read-after-reset in a LightningModule that manages its torchmetrics by hand: the
# epoch hook resets the metric before computing it, so the logged epoch accuracy is the empty
# metric's.
import lightning as L
import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn


class LitClassifier(L.LightningModule):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32 * 3, 256), nn.ReLU(), nn.Linear(256, num_classes))
        self.train_acc = torchmetrics.Accuracy(task="multiclass", num_classes=num_classes)

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        self.train_acc.update(logits, y)
        self.log("train_loss", loss, on_epoch=True, batch_size=y.size(0))
        return loss

    def on_train_epoch_end(self):
        self.train_acc.reset()
        self.log("train_acc_epoch", self.train_acc.compute())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


trainer = L.Trainer(max_epochs=10, accelerator="cpu", devices=1)
