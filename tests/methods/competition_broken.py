"""Functions with the competition's interface that break its contract, one way each, and one that looks
at what smu hands it (tests/methods/test_competition.py, tests/cli/test_competition_cli.py)."""

import time

import torch
from torch import nn

NOT_A_FUNCTION = 42
SEEN = {}
"""What inspect_loaders saw, for the test that calls it."""


def inspect_loaders(net, retain_loader, forget_loader, val_loader):
    """Record the loaders and the model as the function sees them; change nothing."""
    SEEN.clear()
    SEEN["training"] = net.training
    SEEN["loaders"] = [retain_loader, forget_loader, val_loader]
    SEEN["batches"] = [list(loader) for loader in (retain_loader, forget_loader, val_loader)]
    SEEN["torch_draw"] = torch.rand(3)
    return net


def revive_every_weight(net, retain_loader, forget_loader, val_loader):
    """Add 1 to every weight: every pruned weight comes back to life."""
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    return net


def raises(net, retain_loader, forget_loader, val_loader):
    next(iter(retain_loader))
    raise ValueError("the forget set is too small\nsecond line")


def returns_none(net, retain_loader, forget_loader, val_loader):
    net.train()


def returns_a_tensor(net, retain_loader, forget_loader, val_loader):
    return torch.zeros(3)


def eleven_classes(net, retain_loader, forget_loader, val_loader):
    head = [name for name, m in net.named_modules() if isinstance(m, nn.Linear)][-1]
    parent, _, attr = head.rpartition(".")
    old = getattr(net.get_submodule(parent), attr)
    setattr(net.get_submodule(parent), attr, nn.Linear(old.in_features, 11))
    return net


def wrapped(net, retain_loader, forget_loader, val_loader):
    return nn.Sequential(net)


def loops_forever(net, retain_loader, forget_loader, val_loader):
    while True:
        try:
            for images, _ in retain_loader:
                net(images)
            time.sleep(0.01)
        except Exception:  # a solution's broad except must not keep it from being stopped
            pass


def three_arguments(net, retain_loader, forget_loader):
    return net
