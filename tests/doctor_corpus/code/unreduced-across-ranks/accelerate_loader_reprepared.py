# Specimen of unreduced-across-ranks with Accelerate: the loader is built with DataLoader, then
# replaced by the one accelerator.prepare returns (unpacked with the model and the optimizer), so
# each process reads its own shard. The mean over that shard is logged from the main process only.
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader


def fit(model, dataset, epochs=3):
    accelerator = Accelerator(log_with="tensorboard")
    loader = DataLoader(dataset, batch_size=32, shuffle=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-5)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    for epoch in range(epochs):
        loss_sum = torch.zeros((), device=accelerator.device)
        seen = torch.zeros((), device=accelerator.device)
        for batch in loader:
            out = model(**batch)
            accelerator.backward(out.loss)
            optimizer.step()
            optimizer.zero_grad()
            loss_sum += out.loss.detach() * batch["labels"].shape[0]
            seen += batch["labels"].shape[0]
        accelerator.log({"train_loss": loss_sum / seen}, step=epoch)  # finding: unreduced-across-ranks
