# Specimen of half-precision-accumulator in an automatic-mixed-precision tutorial loop: the
# epoch's loss sum lives on the GPU "to avoid host syncs", created in float16 like the
# activations. It is weighted by batch size, which is right, but float16 stops adding a
# batch's ~2.3 once the sum passes 4,096 and overflows past 65,504.
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

device = torch.device("cuda")
features = torch.randn(50_000, 512)
targets = torch.randint(0, 10, (50_000,))
train_loader = DataLoader(TensorDataset(features, targets), batch_size=256, shuffle=True)

model = nn.Sequential(nn.Linear(512, 1024), nn.GELU(), nn.Linear(1024, 10)).to(device)
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
scaler = torch.cuda.amp.GradScaler()
criterion = nn.CrossEntropyLoss()

for epoch in range(20):
    epoch_loss = torch.zeros((), device=device, dtype=torch.float16)
    seen = 0
    for x, y in train_loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type="cuda", dtype=torch.float16):
            logits = model(x)
            loss = criterion(logits, y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        epoch_loss += loss.detach() * x.size(0)
        seen += x.size(0)
    print(f"epoch {epoch}: train loss {epoch_loss.item() / seen:.4f}")
