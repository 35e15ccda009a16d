# Specimen of half-precision-accumulator in a LightningModule trained with precision="16-true":
# the weights, the outputs and so the loss are float16, and self.epoch_loss (a Python 0.0)
# becomes a float16 tensor at the first `+=` of a loss that was not turned into a number.
import lightning as L
import torch
import torch.nn.functional as F
from torch import nn


class TinyLM(L.LightningModule):
    def __init__(self, vocab: int = 32_000, width: int = 512):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.body = nn.TransformerEncoder(nn.TransformerEncoderLayer(width, 8, batch_first=True), num_layers=4)
        self.head = nn.Linear(width, vocab)

    def forward(self, tokens):
        return self.head(self.body(self.embed(tokens)))

    def on_train_epoch_start(self):
        self.epoch_loss = 0.0
        self.epoch_tokens = 0

    def training_step(self, batch, batch_idx):
        tokens, targets = batch
        logits = self(tokens)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        n = targets.numel()
        self.epoch_loss += loss.detach() * n
        self.epoch_tokens += n
        return loss

    def on_train_epoch_end(self):
        self.log("train_loss_epoch", self.epoch_loss / self.epoch_tokens)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=2e-4)


if __name__ == "__main__":
    from my_data import TokenDataModule

    trainer = L.Trainer(accelerator="gpu", devices=1, precision="16-true", max_epochs=3)
    trainer.fit(TinyLM(), datamodule=TokenDataModule(batch_size=32))
