"""Benchmark 5: evaluation throughput of ``smu.execution.engine.predict`` against the bare forward pass.

- limit: the model's forward in inference mode on one batch already scaled to float and in memory,
  repeated, nothing else, in the layout smu uses on the device (channels-last on CPU and CUDA)
- default layout: the same bare forward with contiguous (NCHW) weights and input
- smu: ``predict`` on the uint8 images in memory (layout, slice, scale, forward, gather the logits)

    python bench/eval_throughput.py
    python bench/eval_throughput.py --arch resnet18 --shape cifar10 --synthetic --device cuda
"""

from __future__ import annotations

import argparse

import torch
from common import header, interleaved, table
from data import add_arguments, images, model

from smu.execution.engine import CHANNELS_LAST, eval_batch_size, predict

RawText = argparse.RawDescriptionHelpFormatter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=RawText)
    add_arguments(parser, arch="resnet20,cnn")
    args = parser.parse_args()
    data, source = images(args)
    device = torch.device(args.device)
    batch = eval_batch_size(device)
    header(f"evaluation throughput, {source}, batches of {batch}")
    rows = []
    for arch in args.arch.split(","):
        net = model(arch, data, args.device).eval()
        fns = {"smu": lambda net=net: predict(net, data)}
        layout = torch.channels_last if device.type in CHANNELS_LAST else torch.contiguous_format
        for name, fmt in (("limit", layout), ("default layout", torch.contiguous_format)):
            bare_net = model(arch, data, args.device).eval().to(memory_format=fmt)
            x = (data.x[:batch].float() / 255).contiguous(memory_format=fmt)

            @torch.inference_mode()
            def bare(net=bare_net, x=x, steps=-(-len(data) // batch)) -> None:
                for _ in range(steps):
                    net(x)

            fns[name] = bare
        t = interleaved(fns, args.repeats, device)
        n = len(data)
        rows.append([arch, n / t["default layout"], n / t["limit"], n / t["smu"], t["limit"] / t["smu"]])
    table(rows, ["arch", "default layout img/s", "limit img/s", "smu img/s", "smu / limit"])
    print(f"# medians of {args.repeats} interleaved repetitions")


if __name__ == "__main__":
    main()
