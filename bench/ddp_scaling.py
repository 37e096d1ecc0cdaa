"""Benchmark: data-parallel training throughput of ``smu.execution.engine.fit`` under torchrun, and its
efficiency.

Each run trains for ``--steps`` steps of ``--batch-per-rank`` images on every rank (so the global batch,
smu's ``--batch-size``, is that times the number of ranks: weak scaling, the usual way to compare GPU
counts), with augmentation and a 90%-sparse mask as in ``smu prune``; rank 0 appends the median
images/s of ``--repeats`` epochs (after one warm-up epoch) to ``--record``. ``--report`` prints the
table: images/s and the efficiency against one rank, images/s(N) / (N · images/s(1)).

    torchrun --standalone --nproc-per-node 2 bench/ddp_scaling.py --device cuda --record runs.jsonl
    python bench/ddp_scaling.py --report runs.jsonl
    bash bench/gpu.sh          (1, 2, 4 and 8 GPUs, as many as there are)
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
from common import header, table
from data import SHAPES, images, model

from smu.core.masks import Mask
from smu.data.batches import Augment
from smu.execution import distributed
from smu.execution.engine import TrainConfig, fit, resolve_device, runtime


def sparse_mask(net: torch.nn.Module) -> Mask:
    mask = Mask.ones(net, "conv")
    params = dict(net.named_parameters())
    return mask.prune_lowest({n: params[n].abs() for n in mask.tensors}, int(0.9 * mask.counts()[1]))


def measure(args: argparse.Namespace) -> None:
    device = resolve_device(args.device)  # under torchrun: joins the others, cuda:LOCAL_RANK
    args.device = str(device)
    world = distributed.world_size() if distributed.active() else 1
    batch = args.batch_per_rank * world
    args.images = batch * args.steps
    data, source = images(args)
    net = model(args.arch, data, args.device)
    mask = sparse_mask(net)
    augment = Augment(crop_pad=data.x.shape[-1] // 8 // 2 * 2 or 2, flip=True)
    cfg = TrainConfig(epochs=1, lr=0.01, batch_size=batch)
    rates = []
    with runtime(amp=args.amp):
        for i in range(args.repeats + 1):
            result = fit(net, data, cfg, mask=mask, aug=augment, seed=i)
            rates.append(result.images_per_second)
    if distributed.is_main():
        row = {"arch": args.arch, "source": source, "device": torch.device(args.device).type}
        row |= {"ranks": world, "global_batch": batch, "amp": args.amp, "ips": statistics.median(rates[1:])}
        with open(args.record, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row))


def report(path: str) -> None:
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    header(f"data-parallel training throughput ({path})")
    base = {}
    for r in rows:
        if r["ranks"] == 1:
            base[(r["arch"], r["device"], r["amp"])] = r["ips"]
    shown = []
    for r in rows:
        one = base.get((r["arch"], r["device"], r["amp"]))
        efficiency = r["ips"] / (r["ranks"] * one) if one else None
        shown.append(
            [r["arch"], r["device"], r["ranks"], r["global_batch"], r["ips"], efficiency or "–", r["source"]]
        )
    table(shown, ["arch", "device", "ranks", "global batch", "img/s", "efficiency", "data"])
    print("# efficiency = img/s(N) / (N × img/s(1)); 1.0 is perfect scaling")


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--shape", default="cifar10", choices=list(SHAPES))
    parser.add_argument("--synthetic", action="store_true", help="random images instead of the real dataset")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-per-rank", type=int, default=256)
    parser.add_argument("--steps", type=int, default=40, help="steps per timed epoch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--record", default="ddp_scaling.jsonl", help="file rank 0 appends its result to")
    parser.add_argument("--report", metavar="FILE", help="print the table of the results in FILE and stop")
    args = parser.parse_args()
    if args.report:
        report(args.report)
    else:
        measure(args)


if __name__ == "__main__":
    main()
