# Clean: Accelerate's evaluation gathers the per-sample losses and the predictions with
# gather_for_metrics, which drops the samples the prepared loader repeated, and
# accelerator.print writes once, from the main process.
import torch
import torch.nn.functional as F
from accelerate import Accelerator


def evaluate(model, eval_dl):
    accelerator = Accelerator()
    model, eval_dl = accelerator.prepare(model, eval_dl)
    model.eval()
    losses, hits = [], []
    for inputs, labels in eval_dl:
        with torch.no_grad():
            logits = model(inputs)
        per_sample = F.cross_entropy(logits, labels, reduction="none")
        all_losses, all_hits = accelerator.gather_for_metrics((per_sample, logits.argmax(-1) == labels))
        losses.append(all_losses)
        hits.append(all_hits)
    loss, accuracy = torch.cat(losses).mean(), torch.cat(hits).float().mean()
    accelerator.print(f"eval loss {loss.item():.4f} accuracy {accuracy.item():.4f}")
