# Specimen of padded-duplicates-counted in Lightning: validation under strategy="ddp" with
# self.log(..., sync_dist=True). The ranks' values are combined, but the DistributedSampler
# that Lightning inserts pads the last shard with repeats, which are counted too.
import lightning as L
import torch
import torch.nn.functional as F
from torch import nn


class LitTextClassifier(L.LightningModule):
    def __init__(self, vocab: int = 30_522, classes: int = 4):
        super().__init__()
        self.embedding = nn.EmbeddingBag(vocab, 256)
        self.fc = nn.Linear(256, classes)

    def forward(self, tokens, offsets):
        return self.fc(self.embedding(tokens, offsets))

    def training_step(self, batch, batch_idx):
        tokens, offsets, labels = batch
        loss = F.cross_entropy(self(tokens, offsets), labels)
        self.log("train_loss", loss, on_epoch=True, sync_dist=True, batch_size=labels.size(0))  # finding: padded-duplicates-counted
        return loss

    def validation_step(self, batch, batch_idx):
        tokens, offsets, labels = batch
        logits = self(tokens, offsets)
        self.log("val_loss", F.cross_entropy(logits, labels), sync_dist=True, batch_size=labels.size(0))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


trainer = L.Trainer(accelerator="gpu", devices=2, strategy="ddp", max_epochs=5)
