# also: mean-of-batch-means
# Specimen of unreduced-across-ranks with Accelerate: the predictions are gathered for the
# accuracy (gather_for_metrics), but total_loss is summed on each process and never gathered,
# so accelerator.log records the main process's share.
import torch
from accelerate import Accelerator


def train(model, optimizer, train_dl, eval_dl, epochs):
    acc = Accelerator(log_with="wandb")
    model, optimizer, train_dl, eval_dl = acc.prepare(model, optimizer, train_dl, eval_dl)
    for epoch in range(epochs):
        model.train()
        total_loss = 0
        for batch in train_dl:
            outputs = model(**batch)
            total_loss += outputs.loss.detach().float()
            acc.backward(outputs.loss)
            optimizer.step()
            optimizer.zero_grad()
        model.eval()
        correct, count = 0, 0
        for batch in eval_dl:
            with torch.no_grad():
                logits = model(**batch).logits
            preds, refs = acc.gather_for_metrics((logits.argmax(-1), batch["labels"]))
            correct += (preds == refs).sum()
            count += refs.numel()
        acc.log({"train_loss": total_loss.item() / len(train_dl),  # finding: unreduced-across-ranks
                 "accuracy": correct.item() / count}, step=epoch)
