"""Where `smu demo`'s time goes: per kind of step, per kind of work, and the wall time of variants side by
side (this checkout, an older checkout, the recipe with overrides, a thread count).

    python bench/demo_profile.py                                # this checkout, 3 runs (about 1 min idle)
    python bench/demo_profile.py --before DIR --repeats 3       # and an older checkout, interleaved
    python bench/demo_profile.py --variant 'avx2=ATEN_CPU_CAPABILITY=avx2'   # and AVX2 kernels

Every run is a fresh interpreter (start-up included in its wall time) that runs the quickstart recipe as
`smu demo` does, with timers laid over the library's functions: a function's time counts once, in the
innermost timed function (exclusive). The kinds of work:

- start-up: the interpreter and the imports, up to the first line of the recipe's run
- data: loading the splits, resolving forget sets
- batches: drawing training batches (gather, augmentation) inside the training loop
- train step: forward, loss, backward and SGD step (what is left of the training loop)
- evaluation: forward passes over whole splits (accuracies, MIA features)
- MIA: the support-vector attack and its features
- files: models, masks, checkpoints, step results written and read back
- figures, report: the figures (matplotlib) and the tables
- other: everything else (planning, the executor, Python)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

T0 = time.perf_counter()  # as early as this script can: the interpreter's own start is before it

KINDS = (
    "start-up",
    "data",
    "batches",
    "train step",
    "evaluation",
    "MIA",
    "files",
    "figures",
    "report",
    "other",
)


class Profiler:
    """Exclusive time per (step, kind of work): a timed call inside another timed call is taken out of
    the outer one's time."""

    def __init__(self) -> None:
        self.stack: list[list] = []  # [kind, start, nested seconds]
        self.seconds: dict[tuple[str, str], float] = {}
        self.step = "driver"

    def add(self, kind: str, seconds: float) -> None:
        key = (self.step, kind)
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds

    def enter(self, kind: str) -> None:
        self.stack.append([kind, time.perf_counter(), 0.0])

    def leave(self) -> None:
        kind, start, nested = self.stack.pop()
        spent = time.perf_counter() - start
        self.add(kind, spent - nested)
        if self.stack:
            self.stack[-1][2] += spent

    def wrap(self, owner: object, name: str, kind: str) -> None:
        fn = getattr(owner, name)

        def timed(*args, **kwargs):
            self.enter(kind)
            try:
                return fn(*args, **kwargs)
            finally:
                self.leave()

        replace(owner, name, fn, timed)

    def wrap_generator(self, owner: object, name: str, kind: str) -> None:
        """Time each item a generator yields (what the consumer waits for), not the consumer's work."""
        fn = getattr(owner, name)

        def timed(*args, **kwargs):
            items = fn(*args, **kwargs)
            while True:
                self.enter(kind)
                try:
                    item = next(items)
                except StopIteration:
                    return
                finally:
                    self.leave()
                yield item

        replace(owner, name, fn, timed)


def replace(owner: object, name: str, fn: object, timed: object) -> None:
    """Put ``timed`` in place of ``fn`` on ``owner`` and wherever a module imported it by name."""
    setattr(owner, name, timed)
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("smu") and getattr(module, name, None) is fn:
            setattr(module, name, timed)


def child(out: str, overrides: list[str], threads: int | None) -> None:
    """One demo run, timed: prints a JSON object {wall, steps: {step: {kind: seconds}}}."""
    import smu.data
    import smu.evaluation
    import smu.execution.engine as engine
    import smu.execution.steps as steps
    import smu.io.artifacts as artifacts
    import smu.io.files as files
    import smu.workflows.recipe as recipe
    from smu.workflows.recipes import report, statistics

    p = Profiler()
    p.add("start-up", time.perf_counter() - T0)
    for owner, name in ((smu.data, "load_splits"), (recipe, "load_splits"), (smu.data, "splits_of")):
        p.wrap(owner, name, "data")
    for module in ("smu.data.forget", "smu.workflows.subject", "smu.workflows.recipe"):
        if hasattr(sys.modules[module], "resolve_forget"):
            p.wrap(sys.modules[module], "resolve_forget", "data")
    p.wrap_generator(engine, "_rank_steps", "batches")
    p.wrap(engine, "fit", "train step")
    for owner in (engine, smu.evaluation):
        p.wrap(owner, "predict", "evaluation")
    for name in ("svc_attack", "feature"):
        p.wrap(smu.evaluation, name, "MIA")
    for name in ("save", "load"):
        p.wrap(engine.Checkpoint, name, "files")
    for owner, name in ((artifacts, "save_model"), (artifacts, "load_model"), (files, "write_json")):
        p.wrap(owner, name, "files")
    p.wrap(recipe, "draw_figures", "figures")
    for owner, name in ((statistics, "build"), (statistics, "claims"), (report, "markdown")):
        p.wrap(owner, name, "report")
    run_one = steps.run_one

    def step_named(step):
        tags = step.tags
        p.step = "models" if tags.get("kind") == "models" else str(tags.get("method", tags.get("kind")))
        p.enter("other")
        try:
            return run_one(step)
        finally:
            p.leave()
            p.step = "driver"

    steps.run_one = step_named
    extra = {"threads": threads} if threads else {}
    p.enter("other")
    recipe.run("quickstart", overrides=overrides, out=out, force=True, **extra)
    p.leave()
    wall = time.perf_counter() - T0
    by_step: dict[str, dict[str, float]] = {}
    for (step, kind), seconds in p.seconds.items():
        by_step.setdefault(step, {})[kind] = seconds
    print(json.dumps({"wall": wall, "steps": by_step}))


def run_variant(env: dict[str, str], argv: list[str], out: str) -> dict:
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", out, *argv],
        env=env,
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),  # not the checkout: its ./smu would shadow PYTHONPATH
    )
    if proc.returncode != 0:
        raise SystemExit(f"a run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median_table(runs: list[dict]) -> tuple[list[list], float]:
    """Rows (step, seconds per kind, total) of the medians over runs; and the median wall time."""
    step_names = list(dict.fromkeys(s for r in runs for s in r["steps"]))
    rows = []
    for step in step_names:
        cells = [statistics.median(r["steps"].get(step, {}).get(k, 0.0) for r in runs) for k in KINDS]
        rows.append([step, *cells, sum(cells)])
    total = [sum(r[i] for r in rows) for i in range(1, len(KINDS) + 2)]
    rows.append(["all", *total])
    return rows, statistics.median(r["wall"] for r in runs)


def uptime() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        parser = argparse.ArgumentParser()
        parser.add_argument("--child")
        parser.add_argument("--threads", type=int)
        parser.add_argument("overrides", nargs="*")
        opts = parser.parse_args()
        child(opts.child, opts.overrides, opts.threads)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", help="an older smu checkout, put first on PYTHONPATH")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME=ENV=VALUE,... or NAME=:override,... (repeatable): another run of this checkout",
    )
    parser.add_argument("--no-now", action="store_true", help="leave this checkout's default run out")
    opts = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import fmt, table

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    base = dict(os.environ, PYTHONPATH=here)
    variants: dict[str, tuple[dict[str, str], list[str]]] = {}
    if opts.before:
        variants["before"] = (dict(os.environ, PYTHONPATH=os.path.abspath(opts.before)), [])
    if not opts.no_now:
        variants["now"] = (base, [])
    for spec in opts.variant:
        name, _, rest = spec.partition("=")
        if rest.startswith(":"):
            variants[name] = (base, rest[1:].split(","))
        else:
            env = dict(base, **dict(kv.split("=", 1) for kv in rest.split(",") if kv))
            variants[name] = (env, [])
    print("# smu demo, profiled")
    print(f"# command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs; before: {uptime()}")
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    walls: dict[str, list[float]] = {name: [] for name in variants}
    scratch = tempfile.mkdtemp()
    for i in range(opts.repeats):
        for name, (env, argv) in variants.items():
            result = run_variant(env, argv, os.path.join(scratch, f"{name}-{i}"))
            runs[name].append(result)
            walls[name].append(result["wall"])
            print(f"#   run {i + 1} {name}: {result['wall']:.1f} s ({uptime()})", flush=True)
    print(f"# after: {uptime()}")
    for name in variants:
        rows, wall = median_table(runs[name])
        each = ", ".join(fmt(w) for w in walls[name])
        print(f"\n## {name}: wall {wall:.1f} s (median of {opts.repeats}: {each})")
        table(rows, ["step", *KINDS, "total"])


if __name__ == "__main__":
    main()
