# Specimen of mean-of-batch-means in Lightning 2.x style: validation_step keeps each batch's
# mean loss and on_validation_epoch_end logs torch.stack(...).mean(), a mean of batch means.
# (self.log("val_loss", loss) in validation_step would weight by batch size instead.)
import lightning as L
import torch
import torch.nn.functional as F
from torch import nn


class LitClassifier(L.LightningModule):
    def __init__(self, num_classes: int = 10, lr: float = 1e-3):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 128), nn.ReLU(), nn.Linear(128, num_classes))
        self.validation_step_outputs = []

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.validation_step_outputs.append(loss)

    def on_validation_epoch_end(self):
        epoch_loss = torch.stack(self.validation_step_outputs).mean()
        self.log("val_loss", epoch_loss, prog_bar=True)
        self.validation_step_outputs.clear()

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


if __name__ == "__main__":
    from my_data import MNISTDataModule

    trainer = L.Trainer(max_epochs=5, accelerator="auto", devices=1)
    trainer.fit(LitClassifier(), datamodule=MNISTDataModule(batch_size=100))
