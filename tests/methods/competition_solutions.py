"""Two unlearning functions written as public solutions of the NeurIPS 2023 Machine Unlearning
competition were (Kaggle's starting kit and the notebooks that followed it): plain PyTorch, the
competition's signature, nothing of smu. tests/methods/test_competition.py and tests/cli/ run them with
``--method tests/methods/competition_solutions.py:FUNCTION``."""

import torch
from torch import nn, optim

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def reinit_and_finetune(net, retain_loader, forget_loader, val_loader):
    """Re-initialise the last layer, then fine-tune on the retain set for one epoch."""
    head = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
    head.reset_parameters()
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=len(retain_loader))
    net.train()
    for inputs, targets in retain_loader:
        inputs, targets = inputs.to(DEVICE), targets.to(DEVICE)
        optimizer.zero_grad()
        loss = criterion(net(inputs), targets)
        loss.backward()
        optimizer.step()
        scheduler.step()
    net.eval()
    correct = total = 0
    with torch.no_grad():
        for inputs, targets in val_loader:
            correct += (net(inputs.to(DEVICE)).argmax(1) == targets.to(DEVICE)).sum().item()
            total += len(targets)
    print(f"validation accuracy {correct / max(total, 1):.3f}")  # smu sends this to stderr
    return net


def neggrad_then_finetune(net, retain_loader, forget_loader, val_loader, ascent_steps=5):
    """A few steps of gradient ascent on the forget set, then one epoch of fine-tuning on the retain set."""
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    net.train()
    for step, (inputs, targets) in enumerate(forget_loader):
        if step == ascent_steps:
            break
        optimizer.zero_grad()
        (-criterion(net(inputs), targets)).backward()
        optimizer.step()
    for inputs, targets in retain_loader:
        optimizer.zero_grad()
        criterion(net(inputs), targets).backward()
        optimizer.step()
    return net
