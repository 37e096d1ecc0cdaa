"""Benchmark 4: FF's Fisher accumulation, one batched backward per batch vs one backward per class.

- smu: ``smu.methods.unlearning.fisher.fisher_diagonal`` in the form it picks for the device; both forms
  are also timed: "batched" (all C per-class gradients from one batched backward, autograd's
  ``is_grads_batched``) and "per-class" (C backward passes fed the logit gradient directly,
  accumulated with fused ops)
- loop: the research code's ``fisher_new``: C backward passes per batch of 32
- limit: only the work any exact form must do, in smu's layout: per batch one forward and C
  vector-Jacobian products, nothing accumulated; loop / limit bounds what an exact Fisher can gain

    python bench/ff_fisher.py                         # resnet20, Fashion-MNIST shapes, CPU
    python bench/ff_fisher.py --arch resnet18 --shape cifar10 --synthetic --device cuda --images 2048
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from common import header, interleaved, table
from data import add_arguments, images, model

from smu.execution.engine import fast_layout
from smu.methods.unlearning.fisher import fisher_diagonal

BATCH = 32


def per_class(net: torch.nn.Module, data) -> dict[str, torch.Tensor]:
    net.eval()
    params = dict(net.named_parameters())
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    batches = 0
    for start in range(0, len(data), BATCH):
        x, y = data.x[start : start + BATCH].float() / 255, data.y[start : start + BATCH]
        out = net(x)
        prob = F.softmax(out, 1).detach()
        for c in range(out.shape[1]):
            loss = F.cross_entropy(out, torch.full_like(y, c))
            grads = torch.autograd.grad(loss, list(params.values()), retain_graph=c < out.shape[1] - 1)
            for (name, _), g in zip(params.items(), grads, strict=True):
                fisher[name] += prob[:, c].mean() * g.pow(2)
        batches += 1
    return {n: f / batches for n, f in fisher.items()}


def bare_vjps(net: torch.nn.Module, data) -> None:
    net.eval()
    params = list(net.parameters())
    with fast_layout(net, data.x.device) as layout:
        for start in range(0, len(data), BATCH):
            out = net((data.x[start : start + BATCH].float() / 255).contiguous(memory_format=layout))
            cotangents = torch.eye(out.shape[1], device=out.device)[:, None, :].expand(-1, len(out), -1)
            for c in range(out.shape[1]):
                torch.autograd.grad(
                    out, params, grad_outputs=cotangents[c], retain_graph=c < out.shape[1] - 1
                )


RawText = argparse.RawDescriptionHelpFormatter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=RawText)
    add_arguments(parser, arch="resnet20")
    parser.set_defaults(images=1024, repeats=3)
    parser.add_argument("--classes", type=int, default=None, help="synthetic class count (e.g. 100)")
    args = parser.parse_args()
    data, source = images(args, classes=args.classes)
    header(f"FF Fisher diagonal, {source}, batches of {BATCH}")
    rows = []
    device = torch.device(args.device)
    for arch in args.arch.split(","):
        net = model(arch, data, args.device)
        out = {}
        fns = {
            "smu": lambda net=net, out=out: out.__setitem__("smu", fisher_diagonal(net, data, BATCH)),
            "batched": lambda net=net: fisher_diagonal(net, data, BATCH, batched=True),
            "per-class": lambda net=net: fisher_diagonal(net, data, BATCH, batched=False),
            "loop": lambda net=net, out=out: out.__setitem__("loop", per_class(net, data)),
            "limit": lambda net=net: bare_vjps(net, data),
        }
        t = interleaved(fns, args.repeats, device)
        error = max(
            ((out["smu"][n] - out["loop"][n]).norm() / out["loop"][n].norm().clamp_min(1e-30)).item()
            for n in out["loop"]
        )
        rows.append(
            [
                arch,
                len(data) / t["loop"],
                len(data) / t["smu"],
                t["loop"] / t["smu"],
                t["loop"] / t["batched"],
                t["loop"] / t["per-class"],
                t["loop"] / t["limit"],
                f"{error:.1e}",
            ]
        )
    table(
        rows,
        [
            "arch",
            "loop img/s",
            "smu img/s",
            "smu / loop",
            "batched / loop",
            "per-class / loop",
            "limit / loop",
            "max rel. difference",
        ],
    )
    print("# smu = the form smu picks on this device (batched on a GPU, per-class on a CPU)")
    print(f"# medians of {args.repeats} interleaved repetitions")


if __name__ == "__main__":
    main()
