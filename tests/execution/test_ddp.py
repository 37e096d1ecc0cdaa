"""Data-parallel training under torchrun (2 gloo ranks on the CPU) gives one process's models and files."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from conftest import said
from safetensors.torch import load_file

import smu
from smu.execution import distributed

pytestmark = [
    pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed"),
    pytest.mark.slow,  # see pyproject.toml: pytest -m "not slow" is the inner loop
    pytest.mark.xdist_group("torchrun"),  # one xdist worker starts the rank groups, one at a time
]

# A BatchNorm-free model and an odd batch size: the ranks' parts of every batch differ in size
# (37 and 38 images), so a loss not weighted by part size would fail the comparison.
# A small learning rate: a batch computed in two parts differs from it whole by rounding (~2e-7), and
# at lr 0.02 SGD amplifies that to ~1e-3 within the second epoch on some CPUs (seen on an AMD EPYC, with
# the two parts computed in one process too, no DDP involved); at 0.005 it stays ~2e-7 over two epochs,
# while a loss weighted 1/2 per part instead of 37/75 and 38/75 still moves the model by ~2e-2.
PRUNE = dict(dataset="digits", epochs=2, rewind_epoch=1, rate=0.5, batch_size=75, lr=0.005, device="cpu")
FILES = {
    "dense/model.safetensors",
    "dense/rewind-epoch-1.safetensors",
    "round-1/model.safetensors",
    "round-1/mask.safetensors",
    "manifest.json",
}


def cli_args(command: str, options: dict) -> list[str]:
    words = [command]
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        words += [flag] if value is True else [flag, str(value)]
    return words


def torchrun(*args, env=None, check=True) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node 2 -m smu ARGS`` (a free port of its own)."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done = subprocess.run(
        [*launcher, "-m", "smu", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def spawn(*args, timeout_s: float = 60) -> list[subprocess.Popen]:
    """Two ranks started by hand, as torchrun would but without its agent, which would end the others
    itself when one dies: here each rank must notice on its own."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2"}
    env |= {"SMU_DDP_TIMEOUT": str(timeout_s), "OMP_NUM_THREADS": "1"}
    return [
        subprocess.Popen(
            [sys.executable, "-m", "smu", *map(str, args)],
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]


def files(folder) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def relative_difference(a_path, b_path) -> float:
    a, b = load_file(str(a_path)), load_file(str(b_path))
    assert a.keys() == b.keys()
    floats = [k for k in a if a[k].is_floating_point()]
    return max(float((a[k] - b[k]).norm() / a[k].norm().clamp_min(1e-12)) for k in floats)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The reference: the same prune in one process."""
    out = tmp_path_factory.mktemp("single")
    return smu.prune(arch="cnn_gn", out=out, force=True, **PRUNE)


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "run"
    done = torchrun(*cli_args("prune", {"arch": "cnn_gn", **PRUNE}), "--json", "--out", out)
    return out, done


def test_the_parts_of_a_global_batch_add_up_to_its_mean_loss(monkeypatch):
    monkeypatch.setattr(distributed, "active", lambda: True)
    for world in (2, 3, 4):
        monkeypatch.setenv("WORLD_SIZE", str(world))
        for n in range(1, 40):
            parts = []
            for r in range(world):
                monkeypatch.setenv("RANK", str(r))
                parts.append(distributed.share(n))
            # DDP averages the ranks' gradients of scale · (their part's mean loss): each image must
            # weigh 1/n in that average, as in the mean over the global batch.
            weight = [0.0] * n
            for p in parts:
                for j in range(p.lo, p.hi):
                    weight[j] += p.scale / (world * (p.hi - p.lo))
            assert weight == pytest.approx([1 / n] * n)
            assert sum(p.hi - p.lo for p in parts if p.counts) == n  # every image counted once
            if n >= 2 * world:  # split: contiguous, in order, at least 2 images each (BatchNorm)
                assert [p.lo for p in parts[1:]] == [p.hi for p in parts[:-1]] and parts[-1].hi == n
                assert min(p.hi - p.lo for p in parts) >= 2
            else:  # too small to split: every rank takes the whole batch
                assert all((p.lo, p.hi, p.scale) == (0, n, 1.0) for p in parts)


def test_two_ranks_prune_to_the_single_process_model_and_write_one_set_of_files(single, ddp):
    out, done = ddp
    result = json.loads(done.stdout)  # one JSON object: only rank 0 printed
    assert files(out) == FILES  # no checkpoint, no temporary file, nothing from rank 1
    for name in ("dense/model.safetensors", "round-1/model.safetensors"):
        assert relative_difference(out / name, os.path.join(single["out"], name)) <= 1e-5, name
    mask, reference = load_file(str(out / "round-1/mask.safetensors")), load_file(single["mask"])
    assert mask.keys() == reference.keys() and all(torch.equal(mask[k], reference[k]) for k in mask)
    weights = load_file(str(out / "round-1/model.safetensors"))
    assert all(bool((weights[k][mask[k] == 0] == 0).all()) for k in mask)  # pruned means exactly 0
    assert abs(result["test_acc"] - single["test_acc"]) < 0.3  # sharded evaluation: at most one image
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["versions"]["ranks"] == 2
    assert "Traceback" not in done.stderr and "Warning" not in done.stderr  # GroupNorm: nothing to say


@pytest.mark.parametrize(
    "method, options",
    [
        ("ga", {"epochs": 2, "lr": 1e-3, "batch_size": 25}),
        ("ssd", {"no_eval": True}),  # SSD and FF: sums over the data, split over the ranks and added up
        ("ff", {"no_eval": True}),
    ],
)
def test_two_ranks_unlearn_to_the_single_process_model(single, tmp_path, method, options):
    args = {"model": single["model"], "forget": "class:3", "method": method, "device": "cpu", **options}
    alone = smu.unlearn(**args, out=tmp_path / "alone")
    tracked = ["--log", "csv"] if method == "ga" else []  # rank 0 alone sends each epoch, once
    # "--": torchrun's own parser would read --log as an abbreviation of its --log-dir, and refuse it
    done = torchrun("--", *cli_args("unlearn", args), "--json", "--out", tmp_path / "ddp", *tracked)
    together = json.loads(done.stdout)
    assert relative_difference(alone["model"], together["model"]) <= 1e-5
    tracker_files = {"metrics.csv", "params.csv", "tracking.json"}
    assert files(tmp_path / "ddp") - tracker_files == files(tmp_path / "alone")
    if tracked:
        rows = (tmp_path / "ddp" / "metrics.csv").read_text().splitlines()
        assert [r.split(",")[0] for r in rows if ",ga/loss," in r] == ["1", "2"]
    if alone["metrics"] is not None:
        for key in ("ua", "ra", "ta"):
            assert abs(together["metrics"][key] - alone["metrics"][key]) < 1.0, key


def test_with_batchnorm_each_rank_normalises_its_own_part_so_the_model_differs_but_stays_close(
    single, tmp_path
):
    """Without --sync-bn, BatchNorm sees 37 or 38 images per step instead of 75: a real difference."""
    options = {"arch": "cnn", **PRUNE}
    alone = smu.prune(**options, out=tmp_path / "alone")
    done = torchrun(*cli_args("prune", options), "--json", "--out", tmp_path / "ddp")
    together = json.loads(done.stdout)
    # said once, by rank 0, however many times the command trains
    assert done.stderr.count("Warning: data-parallel on 2 ranks, BatchNorm normalises with each rank") == 1
    assert relative_difference(alone["model"], together["model"]) > 1e-3
    assert abs(together["test_acc"] - alone["test_acc"]) < 5.0


def test_sync_bn_on_the_cpu_is_refused_in_one_line_by_rank_0_alone(tmp_path):
    ranks = spawn(*cli_args("prune", {"arch": "cnn", **PRUNE}), "--sync-bn", "--out", tmp_path / "x")
    (code0, err0), (code1, err1) = [(p.wait(60), p.communicate()[1]) for p in ranks]
    assert code0 == code1 == 2
    assert err0.startswith("Error: --sync-bn needs CUDA") and err0.count("\n") == 1 and err1 == ""
    assert not (tmp_path / "x").exists()


def test_a_killed_rank_stops_the_other_in_one_line_and_resume_finishes_the_same_model(single, tmp_path):
    options = {"arch": "cnn_gn", **PRUNE}
    out = tmp_path / "run"
    checkpoint = out / "dense" / "checkpoint.safetensors"
    rank0, rank1 = spawn(*cli_args("prune", options), "--out", out, timeout_s=20)
    deadline = time.time() + 120
    while not checkpoint.exists():
        assert rank1.poll() is None and time.time() < deadline, "no checkpoint to kill after"
        time.sleep(0.01)
    rank1.send_signal(signal.SIGKILL)
    killed = time.time()
    _, err = rank0.communicate(timeout=60)
    assert time.time() - killed < 20  # well within SMU_DDP_TIMEOUT: gloo sees the closed connection
    err = said(err)  # without the plan and progress lines rank 0's log got before the error
    assert rank0.returncode == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("Error: lost contact with another rank") and "--resume" in err
    rank1.communicate()

    resumed = json.loads(torchrun(*cli_args("prune", options), "--json", "--resume", "--out", out).stdout)
    assert resumed["dense"]["start_epoch"] == 1  # it continued from the checkpoint of epoch 1
    for name in ("dense/model.safetensors", "round-1/model.safetensors"):
        assert relative_difference(out / name, os.path.join(single["out"], name)) <= 1e-5, name
    assert files(out) == FILES


def test_sync_bn_swaps_in_syncbatchnorm_on_the_same_weights_and_puts_batchnorm_back(tiny_model):
    before = {k: v.data_ptr() for k, v in tiny_model.state_dict().items()}
    with distributed.synced_batchnorm(tiny_model):
        norms = [m for m in tiny_model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        assert norms and all(isinstance(m, torch.nn.SyncBatchNorm) for m in norms)
        # The optimiser's parameters and the running statistics are the very same tensors.
        assert {k: v.data_ptr() for k, v in tiny_model.state_dict().items()} == before
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in tiny_model.modules())
    assert {k: v.data_ptr() for k, v in tiny_model.state_dict().items()} == before


RECIPE = """
kind: unlearn
dataset: digits
arch: cnn_gn
device: cpu
seeds: [0]
train: {epochs: 2, lr: 0.005, batch_size: 75}
prune: {method: omp, rates: [0.5], rewind_epoch: 1}
scenarios: ["class:3"]
unlearn:
  retrain: {epochs: 2, lr: 0.005, batch_size: 75}
  ga: {epochs: 1, lr: 1.0e-3, batch_size: 25}
"""


def test_a_recipe_under_torchrun_reports_what_one_process_reports(tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(RECIPE)
    alone = smu.run(str(recipe), out=tmp_path / "alone")
    done = torchrun("run", recipe, "--json", "--out", tmp_path / "ddp")
    together = json.loads(done.stdout)  # one object: rank 0's
    assert together["steps"] == alone["steps"] == {"total": 5, "ran": 5, "skipped": 0}
    assert files(tmp_path / "ddp") - files(tmp_path / "alone") == set()  # nothing more, from no rank
    for step in ("seed-0/class-3/dense/ga", "seed-0/class-3/sparse-0.5/retrain"):
        [model] = (tmp_path / "ddp" / step).rglob("model.safetensors")
        reference = tmp_path / "alone" / model.relative_to(tmp_path / "ddp")
        assert relative_difference(model, reference) <= 1e-5, step
    # sync_bn in a recipe is checked as --sync-bn is: before any step, in one line, by rank 0
    refused = torchrun("run", recipe, "sync_bn=true", "--out", tmp_path / "bn", check=False)
    assert refused.returncode != 0 and refused.stderr.count("Error: --sync-bn needs CUDA GPUs") == 1
    assert not (tmp_path / "bn").exists()


def test_the_ray_executor_is_refused_under_torchrun(monkeypatch):
    from smu.core.errors import UsageError
    from smu.execution import make_executor

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UsageError, match="--executor ray under torchrun"):
        make_executor("ray").check()
