# Clean twin of read-after-reset/epoch_end_hook.py: the metric is computed and logged, then reset.
import lightning as L
import torch.nn.functional as F
import torchmetrics


class Classifier(L.LightningModule):
    def __init__(self, model):
        super().__init__()
        self.model = model
        self.val_acc = torchmetrics.classification.MulticlassAccuracy(num_classes=10)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.model(x)
        self.val_acc.update(logits, y)
        return F.cross_entropy(logits, y)

    def on_validation_epoch_end(self):
        self.log("val_acc", self.val_acc.compute())
        self.val_acc.reset()
