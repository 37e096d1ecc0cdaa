"""The local executor: steps side by side in worker processes here, each computing what a serial run
with the same thread count computes, to the bit; a step's failure or a killed worker reported in one
line while the other steps finish; the same command continuing; options checked before anything runs."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import chain_plan, said, smu, without_rte

from smu.core.errors import SmuError
from smu.core.progress import Estimate
from smu.execution import make_executor
from smu.execution.local_executor import LocalExecutor
from smu.execution.steps import Plan
from smu.workflows import recipe

# The quickstart recipe, one seed, short schedules and three of its methods: 7 steps (the models, then
# 2 models x 3 methods), as in test_ray.py.
QUICK = [
    "seeds=[0]",
    "train.epochs=3",
    "unlearn={retrain: {epochs: 6, lr: 0.1, batch_size: 64}, ft: {epochs: 1, lr: 0.05, batch_size: 64}, "
    "ga: {epochs: 1, lr: 3.0e-4, batch_size: 64}}",
]
LOCAL = ["--executor", "local", "--cpus-per-step", "1"]


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory):
    """The serial executor with one thread, as each worker below computes."""
    out = tmp_path_factory.mktemp("serial") / "run"
    result = smu("run", "quickstart", *QUICK, "--threads", "1", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


@pytest.mark.slow
def test_the_quickstart_recipe_in_local_workers_reports_what_a_serial_run_reports(serial_run, tmp_path):
    out = tmp_path / "run"
    result = smu("run", "quickstart", *QUICK, "--out", out, *LOCAL, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["steps"] == {"total": 7, "ran": 7, "skipped": 0}
    assert without_rte(report) == without_rte(serial_run[1])
    workers = LocalExecutor(1.0).parallel
    assert (
        f"{workers} worker processes of 1 thread each (--executor local)" in (out / "report.md").read_text()
    )
    again = smu("run", "quickstart", *QUICK, "--out", out, *LOCAL, "--json")
    assert json.loads(again.stdout)["steps"] == {"total": 7, "ran": 0, "skipped": 7}


def workers(pid: int) -> list[int]:
    """The worker processes of smu's process ``pid`` (not multiprocessing's resource tracker)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    children = [int(p) for p in path.read_text().split()] if path.is_file() else []
    return [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the workers through Linux's /proc")
def test_a_killed_worker_fails_its_step_in_one_line_and_the_same_command_continues(serial_run, tmp_path):
    out = tmp_path / "run"
    retrain = out / "seed-0" / "class-3" / "dense" / "retrain"
    args = ["run", "quickstart", *QUICK, "--out", str(out), *LOCAL]
    proc = subprocess.Popen([sys.executable, "-m", "smu", *args], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (retrain / "checkpoint.safetensors").is_file():  # an epoch done, more to go
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the retrain step never wrote a checkpoint"
            time.sleep(0.02)
        for pid in workers(proc.pid):  # both: the retrain's among them
            os.kill(pid, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 1
    [line] = said(stderr).strip().splitlines()
    assert (
        line.startswith("Error: ")
        and "seed 0: class:3, dense, retrain: its worker process died (signal 9)" in line
    )
    assert "run the same command again to continue" in line
    assert not (retrain / "step.json").is_file()
    rerun = smu(*args, "--json")
    assert rerun.exit_code == 0, rerun.output
    assert without_rte(json.loads(rerun.stdout))["report"] == without_rte(serial_run[1])["report"]
    assert json.loads((retrain / "step.json").read_text())["result"]["start_epoch"] > 0  # resumed


@pytest.mark.slow
def test_a_step_that_fails_by_itself_is_reported_once_and_the_others_finish(serial_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(serial_run[0], out)  # done steps are reused: only FT (new lr) and GA (diverging) run
    changed = ["unlearn.ft.lr=0.02", "unlearn.ga.lr=1e9"]
    result = smu("run", "quickstart", *QUICK, *changed, "--out", out, *LOCAL)
    assert result.exit_code == 1
    [line] = said(result.stderr).strip().splitlines()
    assert line.startswith("Error: 2 of 4 steps failed: seed 0: class:3, dense, ga: ga diverged in epoch 1")
    for model in ("dense", "sparse-0.9"):
        assert not (out / "seed-0" / "class-3" / model / "ga" / "step.json").is_file()
        ft = json.loads((out / "seed-0" / "class-3" / model / "ft" / "step.json").read_text())
        assert ft["result"]["config"]["lr"] == 0.02


@pytest.mark.slow
def test_no_step_starts_before_the_steps_it_needs_and_a_failed_one_stops_only_those(tmp_path):
    steps = chain_plan(str(tmp_path / "ok"))
    done = make_executor("local", cpus_per_step=1.0).run(
        steps, Plan(chain_plan, {"folder": str(tmp_path / "ok")})
    )
    results = {step.key: result for step, result, _ in done}
    assert [s.key for s, _, _ in done] == [s.key for s in steps]
    for step in steps:
        for need in step.needs:
            assert results[need]["ended"] <= results[step.key]["began"], (step.title, need)
    failing = chain_plan(str(tmp_path / "fail"), fail="s5")
    needing: set[str] = set()
    for step in failing:  # what needs s5, directly or through another step
        if {"key-s5", *needing} & set(step.needs):
            needing.add(step.key)
    with pytest.raises(SmuError) as e:
        make_executor("local").run(
            failing, Plan(chain_plan, {"folder": str(tmp_path / "fail"), "fail": "s5"})
        )
    assert str(e.value).startswith("1 of 12 steps failed: s5: s5 diverged; lower its lr")
    assert f"; {len(needing)} steps that need them did not run" in str(e.value)
    for step in failing:
        assert (step.folder / "step.json").is_file() == (step.key not in needing | {"key-s5"}), step.title


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cpus-per-step", "1.5"], "--cpus-per-step 1.5 must be a whole number >= 1 with --executor local"),
        (["--gpus-per-step", "0.3"], "--gpus-per-step 0.3 with --executor local must be 0, whole, or 1/n"),
        (["--address", "auto"], "--address needs --executor ray"),
    ],
)
def test_bad_local_executor_options_are_one_line_errors_before_anything_runs(args, message, tmp_path):
    result = smu("run", "quickstart", "--out", tmp_path / "run", "--executor", "local", *args)
    assert result.exit_code == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_gpus_asked_for_on_a_machine_without_one_are_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    result = smu(
        "run", "quickstart", "--out", tmp_path / "run", "--executor", "local", "--gpus-per-step", "1"
    )
    assert (
        result.exit_code == 2 and "--gpus-per-step 1: this machine has no GPU torch can use" in result.stderr
    )


def test_workers_fill_the_cores_or_share_the_gpus(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    cores = LocalExecutor().slots()
    assert cores == [None] * len(cores) and len(LocalExecutor(2.0).slots()) == max(1, len(cores) // 2)
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 2)
    assert LocalExecutor().slots() == ["0", "1"]
    assert LocalExecutor(gpus_per_step=0.5).slots() == ["0", "0", "1", "1"]
    assert LocalExecutor(gpus_per_step=2).slots() == ["0,1"]
    assert len(LocalExecutor(gpus_per_step=0).slots()) == len(cores)


def test_a_plan_run_side_by_side_divides_its_time_and_says_so():
    plan = Estimate("27 steps", 1000, 10.0, 100.0, "cpu")
    assert plan.side_by_side(1) == plan
    assert plan.side_by_side(2) == Estimate("27 steps, 2 at a time", 1000, 5.0, 100.0, "cpu")
    assert plan.side_by_side(None) == Estimate("27 steps", 1000, None, None, "cpu")


def test_the_demo_runs_its_steps_side_by_side_where_there_is_room_and_threads_ask_for_a_serial_run(
    monkeypatch, tmp_path
):
    asked = []
    monkeypatch.setattr(recipe, "run", lambda *args, **kwargs: asked.append(kwargs["executor"]))
    for workers in (1, 2):
        monkeypatch.setattr(LocalExecutor, "parallel", workers)
        recipe.demo(tmp_path)
        recipe.demo(tmp_path, threads=2)
    assert asked == ["serial", "serial", "local", "serial"]
