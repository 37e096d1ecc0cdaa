"""Benchmark 3: IU's per-sample gradients and WoodFisher product, vectorised vs a batch-size-1 loop.

- smu: ``torch.func`` (vmap over grad) in chunks, each gradient reduced at once to the two dot
  products the WoodFisher recursion needs (``smu.methods.unlearning.influence.woodfisher_direction``)
- loop: the research code's way: one autograd backward per image, the recursion on full vectors

Both compute H⁻¹v for the same v over the same images; the table shows their relative difference.

    python bench/iu_per_sample.py                     # resnet20, Fashion-MNIST shapes, CPU
    python bench/iu_per_sample.py --arch resnet18 --shape cifar10 --synthetic --device cuda --images 512
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from common import header, interleaved, table
from data import add_arguments, images, model

from smu.methods.unlearning.influence import woodfisher_direction


def literal(net: torch.nn.Module, data, v: torch.Tensor, n: int) -> torch.Tensor:
    """Per-image backward and the recursion on full vectors, as the original ``woodfisher``."""
    net.eval()
    params = list(net.parameters())
    k, o = v.clone(), None
    for i in range(len(data)):
        loss = F.cross_entropy(net(data.x[i : i + 1].float() / 255), data.y[i : i + 1])
        g = torch.cat([t.flatten() for t in torch.autograd.grad(loss, params)])
        if o is None:
            o = g.clone()
        else:
            t = torch.dot(o, g)
            k -= (torch.dot(k, g) / (n + t)) * o
            o -= (t / (n + t)) * o
    return k


N = 1000
"""The WoodFisher constant, as in the research code."""
RawText = argparse.RawDescriptionHelpFormatter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=RawText)
    add_arguments(parser, arch="resnet20")
    parser.set_defaults(images=512, repeats=3)
    args = parser.parse_args()
    data, source = images(args)
    header(f"IU per-sample gradients + WoodFisher, {source}")
    rows = []
    device = torch.device(args.device)
    for arch in args.arch.split(","):
        net = model(arch, data, args.device).eval()
        names = [n for n, _ in net.named_parameters()]
        gen = torch.Generator().manual_seed(1)
        v = {n: (torch.randn(p.shape, generator=gen) * 1e-3).to(p.device) for n, p in net.named_parameters()}
        flat_v = torch.cat([v[n].flatten() for n in names])
        size = flat_v.numel()
        chunk = max(1, min(128, (1 << 26) // size))
        out = {}

        def fast(net=net, out=out, v=v, chunk=chunk) -> None:
            out["smu"] = woodfisher_direction(net, data, v, N, chunk)

        def slow(net=net, out=out, flat_v=flat_v) -> None:
            out["loop"] = literal(net, data, flat_v, N)

        fns = {"smu": fast, "loop": slow}
        t = interleaved(fns, args.repeats, device)
        fast = torch.cat([out["smu"][name].flatten() for name in names])
        error = ((fast - out["loop"]).norm() / out["loop"].norm()).item()
        rows.append([arch, len(data) / t["loop"], len(data) / t["smu"], t["loop"] / t["smu"], f"{error:.1e}"])
    table(rows, ["arch", "loop img/s", "smu img/s", "speed-up", "rel. difference"])
    print(f"# medians of {args.repeats} interleaved repetitions; WoodFisher constant N = 1000")


if __name__ == "__main__":
    main()
