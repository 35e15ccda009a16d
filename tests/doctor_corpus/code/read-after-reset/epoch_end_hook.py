# Specimen of read-after-reset in a Lightning epoch hook: the metric object is reset before its
# value is logged, so every epoch logs the emptied metric.
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
        self.val_acc.reset()
        self.log("val_acc", self.val_acc.compute())  # finding: read-after-reset
