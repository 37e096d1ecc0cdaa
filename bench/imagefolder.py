"""Benchmark 11: an image folder held in memory against the same folder memory-mapped from its cache.

A tree of generated 224x224 JPEGs (3 classes, class-coloured noise) is loaded with ``load_splits``:

- decode: the load's wall time and memory, each in a fresh process: ``in memory`` (SMU_DATA_MEMORY
  above the tree), ``mapped, first load`` (SMU_DATA_MEMORY=0, no cache: decodes into the cache file)
  and ``mapped, cache warm`` (maps the file written before). Peak RSS counts the file's pages the
  process touched (the kernel can drop them); peak anonymous RSS is the heap, sampled every 5 ms.
- gather: images/s of a shuffled pass of ``batches()`` over the training split, batch 128, with
  the crop-and-flip augmentation and the scaling to float (and without the augmentation), both sets
  in one process, interleaved (the mapped file in the page cache, as after its first epoch).

    python bench/imagefolder.py                       # 2,000 images, 3 repeats
    python bench/imagefolder.py --images 500 --repeats 5 --tree /tmp/tree
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import header, interleaved, table
from PIL import Image

RawText = argparse.RawDescriptionHelpFormatter
COLOURS = ((200, 40, 40), (40, 200, 40), (40, 40, 200))

# One load in a child process: seconds, peak RSS and peak anonymous RSS (a sampling thread).
LOAD = """
import json, resource, sys, threading, time
peak = [0]
def anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
def sample():
    while True:
        peak[0] = max(peak[0], anon())
        time.sleep(0.005)
threading.Thread(target=sample, daemon=True).start()
from smu.data import load_splits
start = time.perf_counter()
splits = load_splits("imagefolder", data_dir=sys.argv[1])
seconds = time.perf_counter() - start
peak[0] = max(peak[0], anon())
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": seconds, "rss": rss, "anon": peak[0], "lazy": splits.train.lazy}))
"""


def write_tree(root: Path, images: int, size: int = 224) -> None:
    rng = np.random.default_rng(0)
    for i in range(images):
        split, label = ("val" if i % 10 == 9 else "train"), i % 3
        folder = root / split / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        # Smooth noise (drawn at 1/8 size, scaled up) compresses like a photo, not like static.
        small = rng.normal(COLOURS[label], 50, (size // 8, size // 8, 3)).clip(0, 255).astype(np.uint8)
        Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC).save(
            folder / f"{i:06d}.jpg", quality=90
        )


def load(tree: Path, memory: str) -> dict:
    env = {**os.environ, "SMU_DATA_MEMORY": memory}
    out = subprocess.run([sys.executable, "-c", LOAD, str(tree)], env=env, check=True, capture_output=True)
    return json.loads(out.stdout)


def decode_rows(tree: Path, repeats: int) -> list[list[object]]:
    runs: dict[str, list[dict]] = {"in memory": [], "mapped, first load": [], "mapped, cache warm": []}
    for _ in range(repeats):  # interleaved, so drift on a shared machine hits all three alike
        runs["in memory"].append(load(tree, "1TB"))
        shutil.rmtree(tree / ".smu-cache", ignore_errors=True)
        runs["mapped, first load"].append(load(tree, "0"))
        runs["mapped, cache warm"].append(load(tree, "0"))
    mib = 1 << 20
    return [
        [
            name,
            statistics.median(r["seconds"] for r in rs),
            statistics.median(r["rss"] for r in rs) / mib,
            statistics.median(r["anon"] for r in rs) / mib,
            "lazy" if rs[0]["lazy"] else "in memory",
        ]
        for name, rs in runs.items()
    ]


def gather_rows(tree: Path, repeats: int) -> list[list[object]]:
    import torch

    import smu.data as data
    from smu.data.batches import Augment, batches

    os.environ["SMU_DATA_MEMORY"] = "1TB"
    held = data.load_splits("imagefolder", data_dir=tree)
    os.environ["SMU_DATA_MEMORY"] = "0"
    mapped = data.load_splits("imagefolder", data_dir=tree)
    aug = Augment(held.info.crop_pad, held.info.flip)

    def epoch(train: data.ImageSet, aug: Augment | None) -> None:
        gen = torch.Generator().manual_seed(0)
        for x, _ in batches(train, 128, shuffle=True, gen=gen, aug=aug):
            x.sum()  # touch the batch, as a model would

    runs = {
        f"{name}{label}": lambda s=s, a=a: epoch(s.train, a)
        for label, a in ((", augmented", aug), (", no augmentation", None))
        for name, s in (("in memory", held), ("mapped", mapped))
    }
    seconds = interleaved(runs, repeats, torch.device("cpu"))
    n = len(held.train)
    rows = []
    for label in (", augmented", ", no augmentation"):
        base = seconds[f"in memory{label}"]
        rows += [
            [name + label, n / seconds[name + label], base / seconds[name + label]]
            for name in ("in memory", "mapped")
        ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=RawText)
    parser.add_argument("--images", type=int, default=2000, help="images in the generated tree (90%% train)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tree", type=Path, help="generate the tree here (kept), not in a temporary folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tree = args.tree or Path(tmp) / "tree"
        if not (tree / "train").is_dir():
            write_tree(tree, args.images)
        n = sum(1 for _ in tree.rglob("*.jpg"))
        header(f"image folder, {n} generated 224x224 JPEGs: in memory against memory-mapped")
        print(f"# decoded size: {n * 3 * 224 * 224 / 2**20:,.0f} MiB")
        table(
            decode_rows(tree, args.repeats),
            ["load", "seconds", "peak RSS MiB", "peak anon RSS MiB", "splits"],
        )
        print()
        table(gather_rows(tree, args.repeats * 2), ["batches(128)", "images/s", "/ in memory"])


if __name__ == "__main__":
    main()
