# Specimen of padded-duplicates-counted with Accelerate: the prepared evaluation loader repeats
# samples so every process gets as many batches (even_batches), and accelerator.gather keeps
# those repeats; gather_for_metrics would drop them.
import torch
from accelerate import Accelerator


def evaluate(model, eval_dataloader):
    accelerator = Accelerator()
    model, eval_dataloader = accelerator.prepare(model, eval_dataloader)
    model.eval()
    correct, seen = 0, 0
    for batch in eval_dataloader:
        with torch.no_grad():
            logits = model(**batch).logits
        predictions, references = accelerator.gather((logits.argmax(dim=-1), batch["labels"]))  # finding: padded-duplicates-counted
        correct += (predictions == references).sum()
        seen += references.shape[0]
    accelerator.print(f"accuracy {correct.item() / seen:.4f} on {seen} samples")
