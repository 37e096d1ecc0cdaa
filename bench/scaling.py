"""Benchmark 7: where each unlearning method's time goes as the forget set grows, and FF with more classes.

Times the unlearning step (RTE) of every method on one trained model, for random forget sets of 1%,
10% and 50% of the training split; then FF's Fisher pass on 10 vs 100 classes (synthetic data).

    python bench/scaling.py                 # Fashion-MNIST cnn, CPU (about 8 minutes)
"""

from __future__ import annotations

import argparse
import time

import torch
from common import header, table
from data import images, model

from smu.data import load_splits
from smu.data.forget import resolve_forget
from smu.execution.engine import TrainConfig, fit
from smu.methods.unlearning import METHODS, Context, UnlearnData, make_config
from smu.methods.unlearning.fisher import fisher_diagonal
from smu.models import build_model

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

    def fresh() -> torch.nn.Module:
        shape = {"in_channels": info.channels, "image_size": info.image_size, "num_classes": info.num_classes}
        return build_model(args.arch, **shape, mean=info.mean, std=info.std)

    net = fresh()
    fit(net, splits.train, TrainConfig(epochs=1, lr=0.05))

    def seconds(method: str, data: UnlearnData) -> float:
        copy = fresh()
        copy.load_state_dict(net.state_dict())
        start = time.perf_counter()
        METHODS[method].run(copy, data, make_config(method, SHORT[method]), Context(args.arch))
        return time.perf_counter() - start

    # Warm up every method on a small slice, so no row pays first-call costs (allocator, kernels).
    data = UnlearnData.of(splits, resolve_forget("random:1%", splits))
    small = UnlearnData(
        splits,
        data.forget_set,
        data.forget.subset(torch.arange(64)),
        data.retain.subset(torch.arange(2048)),
        data.aug,
    )
    for method in SHORT:
        seconds(method, small)
    rows = []
    for share in ("1%", "10%", "50%"):
        forget = resolve_forget(f"random:{share}", splits)
        data = UnlearnData.of(splits, forget)
        rows.append([share, len(forget), *[seconds(method, data) for method in SHORT]])
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
