# Specimen of padded-duplicates-counted with Accelerate: the evaluation loader is built with
# DataLoader and replaced by the prepared one (unpacked from accelerator.prepare); its last batch
# is evened out with repeated samples, and accelerator.gather keeps them in the accuracy.
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
        preds, refs = accelerator.gather((logits.argmax(-1), batch["labels"]))  # finding: padded-duplicates-counted
        correct += (preds == refs).sum()
        total += refs.numel()
    accelerator.print(f"accuracy {correct / total:.4f}")
