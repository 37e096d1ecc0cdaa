"""Benchmarks 1 and 2: training throughput of smu's engine against the limit and against the original way.

- limit: the same model's forward, backward and SGD step on one batch already in memory, nothing else
  (in the layout smu uses on the device: channels-last on CPU and CUDA)
- smu: ``smu.execution.engine.fit`` for one epoch: index gather, pad-crop and flip of the whole
  batch, the step with a 90%-sparse mask on the gradients and the weights, live progress (drawn off-screen)
- original: a Dataset with per-image PIL transforms (RandomCrop, RandomHorizontalFlip, ToTensor) in a
  DataLoader, masks applied by ``torch.nn.utils.prune`` forward hooks, default layout, as the research
  code does

    python bench/train_throughput.py                        # resnet20 and cnn, Fashion-MNIST shapes, CPU
    python bench/train_throughput.py --arch resnet18 --shape cifar10 --synthetic --device cuda --no-original
    ... --amp --compile     # both sides with bf16 autocast / torch.compile (and channels-last on CUDA)
"""

from __future__ import annotations

import argparse
import io

import torch
import torch.nn.functional as F
from common import header, interleaved, table
from data import add_arguments, images, model
from rich.console import Console
from rich.progress import Progress
from torch.nn.utils import prune as torch_prune
from torch.utils.data import DataLoader, Dataset

from smu.cli.ui import RichReporter
from smu.core.masks import Mask
from smu.data.batches import Augment
from smu.execution.engine import CHANNELS_LAST, TrainConfig, fit, runtime

BATCH = 256


def sparse_mask(net: torch.nn.Module) -> Mask:
    mask = Mask.ones(net, "conv")
    params = dict(net.named_parameters())
    return mask.prune_lowest({n: params[n].abs() for n in mask.tensors}, int(0.9 * mask.counts()[1]))


def limit_step(net: torch.nn.Module, data, steps: int, amp: bool, compile: bool):
    """The bare step, with the same layout, autocast and compilation as smu's side."""
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x, y = data.x[:BATCH].float() / 255, data.y[:BATCH]
    if x.device.type in CHANNELS_LAST:
        net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    forward = torch.compile(net) if compile else net

    def run() -> None:
        for _ in range(steps):
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
                loss = F.cross_entropy(forward(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return run


def smu_epoch(net: torch.nn.Module, data, mask: Mask, augment: Augment, amp: bool, compile: bool):
    cfg = TrainConfig(epochs=1, lr=0.01, batch_size=BATCH)
    progress = Progress(console=Console(file=io.StringIO(), force_terminal=True))

    def run() -> None:
        with progress, runtime(amp=amp, compile=compile):
            fit(net, data, cfg, mask=mask, aug=augment, reporter=RichReporter(progress))

    return run


class PerImage(Dataset):
    """The research code's data path: one PIL image at a time through torchvision transforms."""

    def __init__(self, data, pad: int, flip: bool):
        from torchvision import transforms

        self.x, self.y = data.x.cpu(), data.y.cpu()
        steps = [transforms.ToPILImage(), transforms.RandomCrop(self.x.shape[-1], padding=pad)]
        steps += [transforms.RandomHorizontalFlip()] if flip else []
        self.transform = transforms.Compose([*steps, transforms.ToTensor()])

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.transform(self.x[i]), self.y[i]


def original_epoch(net: torch.nn.Module, data, mask: Mask, augment: Augment, workers: int, device: str):
    modules = dict(net.named_modules())
    for name, m in mask.items():
        torch_prune.custom_from_mask(modules[name.rsplit(".", 1)[0]], "weight", m.bool())
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loader = DataLoader(
        PerImage(data, augment.crop_pad, augment.flip),
        batch_size=BATCH,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )

    def run() -> None:
        net.train()
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return run


RawText = argparse.RawDescriptionHelpFormatter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=RawText)
    add_arguments(parser, arch="resnet20,cnn")
    parser.add_argument("--no-original", action="store_true", help="skip the per-image DataLoader baseline")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of the original way")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast on both sides")
    parser.add_argument("--compile", action="store_true", help="torch.compile on both sides")
    args = parser.parse_args()
    data, source = images(args)
    extras = [name for name in ("amp", "compile") if getattr(args, name)]
    header(f"training throughput, {source}, batch {BATCH}" + "".join(f", --{e}" for e in extras))
    augment = Augment(crop_pad=data.x.shape[-1] // 8 // 2 * 2 or 2, flip=True)
    steps = len(data) // BATCH
    rows = []
    device = torch.device(args.device)
    for arch in args.arch.split(","):
        fns = {"limit": limit_step(model(arch, data, args.device), data, steps, args.amp, args.compile)}
        net = model(arch, data, args.device)
        fns["smu"] = smu_epoch(net, data, sparse_mask(net), augment, args.amp, args.compile)
        if not args.no_original:
            net = model(arch, data, args.device)
            fns["original"] = original_epoch(net, data, sparse_mask(net), augment, args.workers, args.device)
        t = interleaved(fns, args.repeats, device)
        n = steps * BATCH
        row = [arch, n / t["limit"], n / t["smu"], t["limit"] / t["smu"]]
        if "original" in t:
            row += [n / t["original"], t["original"] / t["smu"]]
        rows.append(row)
    columns = ["arch", "limit img/s", "smu img/s", "smu / limit"]
    columns += [] if args.no_original else ["original img/s", "smu / original"]
    table(rows, columns)
    print(f"# medians of {args.repeats} interleaved repetitions of {steps} steps each")


if __name__ == "__main__":
    main()
