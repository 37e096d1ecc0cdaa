"""Same tensors and metrics before and after a refactor.

Runs a fixed set of small CLI commands on `digits` — prune omp/imp/synflow/random; every
registered unlearning method on class:3 and random:10% of a sparse model, each judged against
retrain; `smu eval`; a two-rate backdoor cleanse; an audit; a short tune — and writes one JSON
record per run: the sha256 of every tensor of every .safetensors file it wrote (metadata and
file times excluded) and its --json output without the fields that measure time.

    python bench/identical.py --smu .venv/bin/smu --out /tmp/after.json
    python bench/identical.py --compare /tmp/before.json /tmp/after.json

Run it with the `smu` of each checkout (an old one, then the new one) and compare: the second
command prints every difference and exits 1 if there is one. Threads are pinned to one so the
kernels pick the same reduction order both times.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

TRAIN = ["--dataset", "digits", "--arch", "cnn", "--batch-size", "64", "--lr", "0.05"]
PRUNE = {
    "omp": ["--rate", "0.9", "--epochs", "4", "--rewind-epoch", "1"],
    "imp": ["--rate", "0.5", "--times", "2", "--epochs", "3", "--rewind-epoch", "1"],
    "synflow": ["--rate", "0.9", "--epochs", "3", "--synflow-iterations", "10"],
    "random": ["--rate", "0.9", "--epochs", "3"],
}
FORGETS = {"class": "class:3", "random": "random:10%"}
RETRAIN = ["--epochs", "3", "--batch-size", "64", "--lr", "0.05"]
# Short settings per method; a method not named here runs with its defaults.
QUICK = {
    "ft": ["--epochs", "2"],
    "ga": ["--epochs", "2", "--lr", "1e-3"],
    "iu": ["--iu-samples", "100"],
    "l1-sparse": ["--epochs", "2"],
    "rl": ["--epochs", "2"],
    "salun": ["--epochs", "2"],
    "scrub": ["--epochs", "2"],
    "neggrad+": ["--epochs", "1", "--batch-size", "128"],
    "boundary-shrink": ["--epochs", "2"],
    "boundary-expand": ["--epochs", "2"],
}
METHODS = [
    "ft", "ga", "ff", "iu", "l1-sparse", "rl", "salun", "scrub", "neggrad+", "ssd",
    "boundary-shrink", "boundary-expand", "none",
]  # fmt: skip
BACKDOOR = [*TRAIN, "--epochs", "12", "--rewind-epoch", "1", "--unlearn-epochs", "20"]
BACKDOOR += ["--unlearn-lr", "0.05", "--rates", "0,0.5", "--method", "ft"]
AUDIT = ["--forget", "class:3", "--models", "3", "--retrain-epochs", "4", "--retrain-batch-size", "64"]
AUDIT += ["--method", "ga", "--epochs", "2", "--lr", "1e-3"]
TUNE = ["--forget", "class:3", "--method", "ga", "--batch-size", "64", "--retrain-epochs", "4"]
TUNE += ["--retrain-batch-size", "64", "--space", "epochs=1:3", "--seed", "1", "--trials", "3"]

TIMING_SUFFIXES = ("seconds", "per_second", "rte", "_s")


def untimed(value):
    """The JSON output without the fields that measure wall-clock time."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if not k.lower().endswith(TIMING_SUFFIXES)}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def tensor_hashes(folder: Path) -> dict[str, str]:
    import torch
    from safetensors import safe_open

    hashes = {}
    for path in sorted(folder.rglob("*.safetensors")):
        with safe_open(str(path), "pt") as f:
            for key in sorted(f.keys()):
                tensor = f.get_tensor(key).contiguous()
                digest = hashlib.sha256(tensor.view(-1).view(torch.uint8).numpy())
                hashes[f"{path.relative_to(folder)}:{key}"] = digest.hexdigest()[:16]
    return hashes


def run_all(smu: str, root: Path) -> dict[str, dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    records: dict[str, dict] = {}

    def run(name: str, *args: str) -> dict:
        out = f"runs/{name}"
        done = subprocess.run(
            [smu, *args, "--out", out, "--json"], cwd=root, env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            sys.exit(f"{name}: exit {done.returncode}\n{done.stderr[-2000:]}")
        result = json.loads(done.stdout)
        records[name] = {"json": untimed(result), "tensors": tensor_hashes(root / out)}
        print(f"{name}: {len(records[name]['tensors'])} tensors", file=sys.stderr)
        return result

    pruned = {m: run(f"prune-{m}", "prune", *TRAIN, "--method", m, *PRUNE[m]) for m in PRUNE}
    model = pruned["omp"]["model"]
    for scenario, forget in FORGETS.items():
        reference = run(f"retrain-{scenario}", "unlearn", "--model", model, "--forget", forget,
                        "--method", "retrain", *RETRAIN)["model"]  # fmt: skip
        for method in METHODS:
            result = run(f"{method}-{scenario}", "unlearn", "--model", model, "--forget", forget,
                         "--method", method, *QUICK.get(method, []), "-r", reference)  # fmt: skip
        done = subprocess.run(
            [smu, "eval", "--model", result["model"], "--forget", forget, "-r", reference, "--json"],
            cwd=root, env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        records[f"eval-{scenario}"] = {"json": untimed(json.loads(done.stdout)), "tensors": {}}
    run("backdoor", "backdoor-cleanse", *BACKDOOR)
    run("audit", "audit", "--model", model, *AUDIT)
    run("tune", "tune", "--model", model, *TUNE)
    return records


def compare(before: dict, after: dict) -> list[str]:
    problems = [f"{name}: only before" for name in before.keys() - after.keys()]
    problems += [f"{name}: only after" for name in after.keys() - before.keys()]
    for name in sorted(before.keys() & after.keys()):
        for part in ("json", "tensors"):
            a, b = untimed(before[name][part]), untimed(after[name][part])
            if a != b:
                a_text, b_text = json.dumps(a, sort_keys=True), json.dumps(b, sort_keys=True)
                problems.append(f"{name} {part} differs:\n  before {a_text[:600]}\n  after  {b_text[:600]}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smu", default="smu", help="the smu executable of the checkout to run")
    parser.add_argument("--out", type=Path, help="where to write the records (JSON)")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.compare:
        before, after = (json.loads(p.read_text()) for p in args.compare)
        problems = compare(before, after)
        for line in problems:
            print(line)
        print(f"{len(before)} runs before, {len(after)} after: {len(problems)} differences")
        sys.exit(1 if problems else 0)
    with tempfile.TemporaryDirectory() as tmp:
        records = run_all(args.smu, Path(tmp))
    args.out.write_text(json.dumps(records, indent=1, sort_keys=True))
    print(f"{len(records)} runs written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
