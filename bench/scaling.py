"""Benchmark 7: where each unlearning method's time goes as the forget set grows, and FF with more classes.

Times the unlearning step (RTE) of every method on one trained model, for random forget sets of 1%,
10% and 50% of the training split; then FF's Fisher pass on 10 vs 100 classes (synthetic data).

    python bench/scaling.py                 # Fashion-MNIST cnn, CPU (about 10 minutes)
"""

from __future__ import annotations

import argparse
import time

import torch
from common import header, table
from data import images, model

from smu.data import load_splits
from smu.data.forget import resolve_forget
from smu.engine import TrainConfig, fit
from smu.unlearning import METHODS, Context, UnlearnData, make_config
from smu.unlearning.fisher import fisher_diagonal

SHORT = {
    "retrain": {"epochs": 1},
    "ft": {"epochs": 1},
    "l1-sparse": {"epochs": 1},
    "ga": {"epochs": 1},
    "ff": {},
    "iu": {},
}


RawText = argparse.RawDescriptionHelpFormatter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=RawText)
    parser.add_argument("--arch", default="cnn")
    parser.add_argument("--dataset", default="fashion-mnist")
    args = parser.parse_args()
    splits = load_splits(args.dataset)
    header(
        f"unlearning time vs forget-set size, {args.dataset} {args.arch}, one epoch of the training methods"
    )
    torch.manual_seed(0)
    info = splits.info
    from smu.models import build_model

    net = build_model(
        args.arch,
        in_channels=info.channels,
        image_size=info.image_size,
        num_classes=info.num_classes,
        mean=info.mean,
        std=info.std,
    )
    fit(net, splits.train, TrainConfig(epochs=1, lr=0.05))
    rows = []
    for share in ("1%", "10%", "50%"):
        forget = resolve_forget(f"random:{share}", splits)
        data = UnlearnData.of(splits, forget)
        row = [share, len(forget)]
        for method, options in SHORT.items():
            copy = build_model(
                args.arch,
                in_channels=info.channels,
                image_size=info.image_size,
                num_classes=info.num_classes,
                mean=info.mean,
                std=info.std,
            )
            copy.load_state_dict(net.state_dict())
            start = time.perf_counter()
            METHODS[method].run(copy, data, make_config(method, options), Context(args.arch))
            row.append(time.perf_counter() - start)
        rows.append(row)
    table(rows, ["forget", "images", *[f"{m} s" for m in SHORT]])
    print(
        "# retrain, ft, l1-sparse: one pass over the retain set; ga: over the forget set; ff: the retain set"
    )
    print("# with C backward passes per batch; iu: one pass over both sets plus 1,002 per-sample gradients")

    header("FF Fisher pass vs class count, synthetic 1x28x28, 2,048 images")
    rows = []
    for classes in (10, 100):
        ns = argparse.Namespace(shape="fashion-mnist", synthetic=True, device="cpu", images=2048)
        data, _ = images(ns, classes=classes)
        m = model(args.arch, data, "cpu")
        start = time.perf_counter()
        fisher_diagonal(m, data, 32)
        rows.append([classes, time.perf_counter() - start])
    table(rows, ["classes", "Fisher pass s"])


if __name__ == "__main__":
    main()
