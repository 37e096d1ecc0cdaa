"""UNSIR: error-maximising noise, impair, repair (Tarun et al., TNNLS 2023, "Fast Yet Effective Machine
Unlearning").

Class-wise by design: the noise is learnt against the forgotten class (for a sub-class, against the class
it belongs to, as the authors' sub-class script does, with the retain images taken per sub-class).

1. Noise. A batch of B images z (B = 32), in the network's normalised input space and drawn from
   N(0, 1), is trained for ``noise_steps`` Adam steps (lr 0.1) to *maximise* the model's loss on the
   forgotten class c while staying small:
       min_z  −CE(f(z), c) + 0.1 · mean_b Σ z_b²
   The model is in train mode, as in the official code (its BatchNorm statistics follow the noise; the
   impair and repair passes, also in train mode, move them back).
2. Impair. One epoch, Adam lr 1e-4, cross-entropy, batches of 32, on the noise repeated 80 times
   (labelled c) shuffled with up to 500 retain images of each class (the first of each, in the retain
   set's order).
3. Repair. One epoch, a new Adam at lr 1e-4, batches of 128, on those retain images alone.

Data as the SSD authors' ``UNSIR`` (if-loops/selective-synaptic-dampening,
``forget_full_class_strategies.py``, ``unlearn.py``) feeds it: no augmentation, shuffled, the last
partial batch kept, train mode. The paper gives the impair step lr 0.02; the code, followed here, 1e-4.
The noise has the data's channels (the code hard-codes 3) and lives in the same normalised space: an
image x = mean + std · z enters the model, which normalises it back to z. Their sub-class script learns
the noise for 250 steps: ``--noise-steps 250``. Random forgetting is refused: the paper's method has no
sample-wise variant in the authors' code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from smu.core.options import param
from smu.core.training import AdamConfig
from smu.data import ImageSet
from smu.execution.engine import Pass
from smu.methods.unlearning.base import Context, Feed, UnlearnData, UnlearnMethod


@dataclass
class UNSIRConfig(AdamConfig):
    epochs: int = param(1, ge=1)
    """Impair epochs over the noise and the retain images."""
    batch_size: int = param(32, ge=1)
    """Images per impair step."""
    repair_epochs: int = param(1, ge=1)
    """Repair epochs over the retain images alone."""
    repair_batch_size: int = param(128, ge=1)
    """Images per repair step."""
    noise_images: int = param(32, ge=1)
    """Noise images learnt (the official noise batch)."""
    noise_steps: int = param(25, ge=1, tune="5:250:log")
    """Adam steps that learn the noise (the authors' sub-class script: 250)."""
    noise_lr: float = param(0.1, gt=0)
    """Learning rate of the noise's Adam."""
    noise_penalty: float = param(0.1, ge=0)
    """Weight of the noise's mean squared norm in its loss."""
    noise_copies: int = param(80, ge=1)
    """Times the noise images are repeated in the impair set."""
    samples_per_class: int = param(500, ge=1)
    """Retain images of each class in the impair and repair sets (the first of each)."""


def retain_sample(retain: ImageSet, per_class: int, by_subclass: bool = False) -> ImageSet:
    """The first ``per_class`` retain images of each class (of each sub-class), in the retain set's order."""
    y = (retain.fine if by_subclass else retain.y).cpu()
    rank = torch.zeros_like(y)
    for c in y.unique():
        where = (y == c).nonzero().flatten()
        rank[where] = torch.arange(len(where))
    return retain.subset((rank < per_class).nonzero().flatten())


def learn_noise(
    model: nn.Module, data: UnlearnData, target: int, cfg: UNSIRConfig, ctx: Context
) -> torch.Tensor:
    """The error-maximising images, as x = mean + std · z in [0, 1] space (float, unclamped)."""
    info = data.splits.info
    device = next(model.parameters()).device
    shape = (cfg.noise_images, *info.input_shape)
    z = torch.randn(shape, generator=ctx.generator()).to(device).requires_grad_(True)
    mean = torch.tensor(info.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(info.std, device=device).view(1, -1, 1, 1)
    labels = torch.full((cfg.noise_images,), target, dtype=torch.long, device=device)
    opt = torch.optim.Adam([z], lr=cfg.noise_lr)
    model.train()
    for _ in range(cfg.noise_steps):
        loss = (
            -F.cross_entropy(model(mean + std * z), labels)
            + cfg.noise_penalty * z.pow(2).sum((1, 2, 3)).mean()
        )
        opt.zero_grad()
        (grad,) = torch.autograd.grad(loss, [z])  # the model's weights take no gradient here
        z.grad = grad
        opt.step()
    return (mean + std * z).detach()


def unsir(model: nn.Module, data: UnlearnData, cfg: UNSIRConfig, ctx: Context) -> nn.Module:
    """Learn noise that maximises the forgotten class's loss, train on it with retain images, then repair."""
    fs = data.forget_set
    METHOD.check_forget(fs)
    subclass = fs.forget_class is None  # the noise is learnt against the sub-class's class
    target = fs.subclass_of if subclass else fs.forget_class
    keep = retain_sample(data.retain, cfg.samples_per_class, by_subclass=subclass)
    noise = learn_noise(model, data, target, cfg, ctx)
    # Pixels on the 0-255 scale the sets hold (float: the noise is unbounded), labelled with the class
    copies = noise.repeat(cfg.noise_copies, 1, 1, 1).mul_(255.0)
    noisy = ImageSet(
        copies.to(keep.device), torch.full((len(copies),), target, dtype=torch.long, device=keep.device)
    )
    impair = ImageSet.join([keep, noisy])
    ctx.train(model, [Pass(impair)], cfg, data.aug, "unsir-impair", phase="impair")
    repair = dataclasses.replace(cfg, epochs=cfg.repair_epochs, batch_size=cfg.repair_batch_size)
    ctx.train(model, [Pass(keep)], repair, data.aug, "unsir-repair", phase="repair")
    return model


METHOD = UnlearnMethod(
    "unsir",
    "UNSIR: learn noise that maximises the forgotten class's loss, impair on it, repair on retain images",
    UNSIRConfig,
    unsir,
    classwise=True,
    feeds=(
        Feed("noise+retain", "train", "batch_size", "shuffled", False, "impair"),
        Feed("retain", "train", "repair_batch_size", "shuffled", False, "repair", epochs="repair_epochs"),
    ),
    source="if-loops/selective-synaptic-dampening: forget_full_class_strategies.py (UNSIR), unlearn.py "
    "(UNSIR_noise_train, UNSIR_create_noisy_loader, fit_one_unlearning_cycle)",
    differs="the impair step starts from zero gradients: the official one also adds the gradients the "
    "noise's 25 steps left in the model's .grad (its noise optimiser zeroes only the noise's)",
)
