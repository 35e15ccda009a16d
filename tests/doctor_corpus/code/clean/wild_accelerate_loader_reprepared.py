# Clean twin of accelerate_loader_reprepared.py: the Accelerator does not even out the batches
# (even_batches=False, so no sample is repeated) and the sum and the count are reduced across
# processes before the main process logs their ratio.
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader


def fit(model, dataset, epochs=3):
    accelerator = Accelerator(log_with="tensorboard", even_batches=False)
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
        totals = accelerator.reduce(torch.stack([loss_sum, seen]), reduction="sum")
        accelerator.log({"train_loss": totals[0] / totals[1]}, step=epoch)
