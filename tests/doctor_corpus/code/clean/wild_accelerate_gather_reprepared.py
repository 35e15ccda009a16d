# Clean twin of accelerate_gather_reprepared.py: gather_for_metrics drops the samples that the
# prepared loader repeated to even out its last batch, so each sample counts once.
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader


def evaluate(model, dataset):
    accelerator = Accelerator()
    eval_loader = DataLoader(dataset, batch_size=64)
    model, eval_loader = accelerator.prepare(model, eval_loader)
    model.eval()
    correct, total = 0, 0
    for batch in eval_loader:
        with torch.no_grad():
            logits = model(**batch).logits
        preds, refs = accelerator.gather_for_metrics((logits.argmax(-1), batch["labels"]))
        correct += (preds == refs).sum()
        total += refs.numel()
    accelerator.print(f"accuracy {correct / total:.4f}")
