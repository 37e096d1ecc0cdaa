import json
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, settings
from typer.testing import CliRunner

from smu.cli.app import app
from smu.core.errors import DivergedError, SmuWarning
from smu.core.options import flag_of
from smu.data import load_splits
from smu.execution.steps import Step
from smu.methods.unlearning import METHODS
from smu.models import build_model

# ci, the default: a fixed example budget, the same examples on every run (tests/fuzz/test_fuzz.py takes about
# 35 s). nightly, by `pytest --hypothesis-profile nightly`: ten times the examples, new ones each run; a
# failure prints the blob that @reproduce_failure replays.
_FUZZ_CHECKS = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large]
settings.register_profile(
    "ci", max_examples=200, derandomize=True, database=None, deadline=None, suppress_health_check=_FUZZ_CHECKS
)
settings.register_profile(
    "nightly",
    max_examples=2000,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=_FUZZ_CHECKS,
)
settings.load_profile("ci")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Each xdist worker gets its share of the cores, in this process and in every process a test starts
    # (smu in a subprocess, torchrun's ranks, Ray's workers): two workers on two cores, one thread each.
    _threads = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    os.environ["OMP_NUM_THREADS"] = str(_threads)
    torch.set_num_threads(_threads)


def smu(*args):
    """``smu ARGS...`` run in this process, as a user would type it (each argument made a string):
    a click Result with ``exit_code``, ``stdout``, ``stderr`` and ``output``."""
    return CliRunner().invoke(app, [str(a) for a in args])


PROGRESS = re.compile(r"\[\d\d:\d\d:\d\d\] ")
"""The start of a progress line in a log (CliRunner's stderr is not a terminal)."""


def said(stderr: str) -> str:
    """What a command said on stderr besides its progress lines: an error that comes mid-run follows
    the plan and progress a log gets."""
    return "".join(line for line in stderr.splitlines(keepends=True) if not PROGRESS.match(line))


def quick(method: str, **overrides: Any) -> dict[str, Any]:
    """A method's options for a short run on a tiny test model, from the registry: a trainer gets 2
    epochs in batches of 64, then what its declaration's ``quick`` sets, then ``overrides``. A new
    method is picked up by every test that runs them all, with no row to add here."""
    spec = METHODS[method]
    return ({"epochs": 2, "batch_size": 64} if spec.trains else {}) | dict(spec.quick) | overrides


def flags(options: dict[str, Any]) -> list[str]:
    """Options as the words of a command line: ``{"iu_samples": 50}`` -> ``["--iu-samples", "50"]``."""
    return [word for name, value in options.items() for word in (flag_of(name), str(value))]


@pytest.fixture(scope="session")
def digits():
    """The embedded dataset with the default 10% validation hold-out, on the CPU."""
    return load_splits("digits", seed=0)


@pytest.fixture(scope="session")
def fashion():
    """Fashion-MNIST from Debian's package (real data, class names that are words); skipped without it."""
    from pathlib import Path

    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("needs Debian's dataset-fashion-mnist package")
    return load_splits("fashion-mnist", data_dir="/nonexistent", seed=0)


@pytest.fixture
def tiny_model(digits):
    """A freshly initialised small CNN for digits."""
    torch.manual_seed(0)
    info = digits.info
    return build_model(
        "cnn",
        in_channels=info.channels,
        image_size=info.image_size,
        num_classes=info.num_classes,
        mean=info.mean,
        std=info.std,
    )


@pytest.fixture(scope="session")
def pruned_cnn(tmp_path_factory):
    """A small digits cnn made by ``smu prune`` (4 epochs, 50% OMP): the run folder, holding dense/
    and round-1/. Shared: tests must write their own files elsewhere."""
    from smu.cli.app import main

    folder = tmp_path_factory.mktemp("pruned-cnn")
    args = [
        "prune",
        "--dataset",
        "digits",
        "--arch",
        "cnn",
        "--epochs",
        "4",
        "--rewind-epoch",
        "1",
        "--rate",
        "0.5",
        "-q",
        "--out",
    ]
    with pytest.raises(SystemExit) as e:
        main([*args, str(folder)])
    assert e.value.code == 0
    return folder


def chain_plan(folder: str, fail: str = "", warn: str = "") -> list[Step]:
    """A plan of 12 sleeping steps with a diamond of needs; the step named ``fail`` raises, the one named
    ``warn`` warns (as a tracker that failed in a worker does)."""
    names = [f"s{i}" for i in range(12)]
    needs = {f"s{i}": [f"s{j}" for j in range(i) if (i * 7 + j * 3) % 5 == 0] for i in range(12)}

    def run(name: str) -> dict:
        began = time.time()
        if name == fail:
            raise DivergedError(f"{name} diverged", hint="lower its lr")
        if name == warn:
            warnings.warn(f"{name} has something to say", SmuWarning, stacklevel=1)
        time.sleep(0.05 * (int(name[1:]) % 3))
        return {"began": began, "ended": time.time()}

    return [
        Step(
            n,
            Path(folder) / n,
            f"key-{n}",
            lambda n=n: run(n),
            {"kind": "test"},
            tuple(f"key-{m}" for m in needs[n]),
        )
        for n in names
    ]


def without_rte(report: dict) -> dict:
    """report.json less what differs between two runs of the same steps: the RTE times."""
    tables = json.loads(json.dumps(report["report"]))
    for table in tables:
        for row in table["rows"]:
            for cells in row["cells"].values():
                cells.pop("rte_min")
    return {"report": tables, "steps": report["steps"]}
