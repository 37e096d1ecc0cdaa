"""The Ray executor on a local Ray (2 CPUs, one per test session): the same report as the serial executor,
a killed worker's step retried and resumed, a step's own failure reported once while the others finish,
the plan's order kept, and a one-line error without Ray."""

import importlib.util
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from conftest import chain_plan, said, smu, without_rte

from smu.core.errors import SmuError, SmuWarning
from smu.core.progress import Reporter
from smu.execution import make_executor
from smu.execution.steps import Plan
from smu.workflows.recipe import Planner
from smu.workflows.recipes.catalog import shipped
from smu.workflows.recipes.config import load_recipe

# slow: see pyproject.toml (-m "not slow" is the inner loop); one xdist worker holds the one Ray cluster.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

# The quickstart recipe, one seed, short schedules and three of its methods: 7 steps (the models, then
# 2 models x 3 methods).
QUICK = [
    "seeds=[0]",
    "train.epochs=3",
    "unlearn={retrain: {epochs: 6, lr: 0.1, batch_size: 64}, ft: {epochs: 1, lr: 0.05, batch_size: 64}, "
    "ga: {epochs: 1, lr: 3.0e-4, batch_size: 64}}",
]


@pytest.fixture(scope="session")
def local_ray():
    ray = pytest.importorskip("ray")
    # At least as many CPUs as a step takes by default (this process's torch threads), or none would fit.
    cpus = max(2, torch.get_num_threads())
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    # The synthetic plans live in the tests' conftest, which workers cannot import: send them by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules["conftest"])
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory):
    """The serial executor, with this process's torch threads, as many as a Ray step takes by default:
    on a CPU the float reduction order, and so a trained model, depends on the thread count."""
    out = tmp_path_factory.mktemp("serial") / "run"
    result = smu("run", "quickstart", *QUICK, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_the_quickstart_recipe_on_ray_reports_what_the_serial_executor_reports(
    local_ray, serial_run, tmp_path
):
    out = tmp_path / "run"
    tracked = ["--log", "mlflow"] if importlib.util.find_spec("mlflow") else []
    result = smu("run", "quickstart", *QUICK, "--out", out, "--executor", "ray", "--json", *tracked)
    assert result.exit_code == 0, result.output
    ray_report = json.loads(result.stdout)
    assert ray_report["steps"] == {"total": 7, "ran": 7, "skipped": 0}
    assert without_rte(ray_report) == without_rte(serial_run[1])
    assert without_rte(json.loads((out / "report.json").read_text())) == without_rte(serial_run[1])
    # every step ran once, in a Ray worker (not this process), and only after the steps it needs were done
    steps = Planner(load_recipe("quickstart", QUICK), out, Reporter()).steps()
    by_key = {s.key: s for s in steps}
    for step in steps:
        workers = json.loads((step.folder / "workers.json").read_text())
        assert len(workers) == 1 and not workers[0]["worker"].endswith(f":{os.getpid()}")
        began = (step.folder / "step.started").stat().st_mtime_ns
        for need in step.needs:
            assert (by_key[need].folder / "step.json").stat().st_mtime_ns <= began, step.title
    again = smu("run", "quickstart", *QUICK, "--out", out, "--executor", "ray", "--json", *tracked)
    assert json.loads(again.stdout)["steps"] == {"total": 7, "ran": 0, "skipped": 7}
    if tracked:  # every step logged from its Ray worker into the one parent run; the rerun added none
        from mlflow.tracking import MlflowClient

        client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert sorted(r.info.run_name for r in children) == sorted(s.title for s in steps)
        assert len(runs) == 8 and all(r.info.status == "FINISHED" for r in runs)
        (ga,) = [r for r in children if r.data.tags.get("method") == "ga" and "dense" in r.info.run_name]
        assert [m.step for m in client.get_metric_history(ga.info.run_id, "ga/loss")] == [1]


def test_a_killed_worker_s_step_is_retried_resumes_from_its_checkpoint_and_changes_nothing(
    local_ray, serial_run, tmp_path
):
    out = tmp_path / "run"
    retrain = out / "seed-0" / "class-3" / "dense" / "retrain"
    # A second driver in its own process, joining this session's Ray by its address, so that the worker
    # killed here is one of the cluster's and this test process stays out of the way.
    address = local_ray.get_runtime_context().gcs_address
    args = ["run", "quickstart", *QUICK, "--out", str(out), "--executor", "ray", "--address", address]
    proc = subprocess.Popen(
        [sys.executable, "-m", "smu", *args, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 240
        while not (retrain / "checkpoint.safetensors").is_file():  # an epoch done, more to go
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the retrain step never wrote a checkpoint"
            time.sleep(0.02)
        worker = json.loads((retrain / "workers.json").read_text())[0]["worker"]
        os.kill(int(worker.rpartition(":")[2]), signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr.decode()
    assert stdout.count(b"\n") == 1, (stdout, stderr)
    assert without_rte(json.loads(stdout)) == without_rte(serial_run[1])
    attempts = json.loads((retrain / "workers.json").read_text())
    assert len(attempts) == 2 and attempts[0]["worker"] != attempts[1]["worker"]
    assert json.loads((retrain / "step.json").read_text())["result"]["start_epoch"] > 0


def test_a_step_that_fails_by_itself_is_reported_once_and_the_others_finish(local_ray, serial_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(serial_run[0], out)  # done steps are reused: only FT (new lr) and GA (diverging) run
    changed = ["unlearn.ft.lr=0.02", "unlearn.ga.lr=1e9"]
    result = smu("run", "quickstart", *QUICK, *changed, "--out", out, "--executor", "ray")
    assert result.exit_code == 1
    [line] = said(result.stderr).strip().splitlines()
    assert line.startswith("Error: 2 of 4 steps failed: seed 0: class:3, dense, ga: ga diverged in epoch 1")
    assert "; seed 0: class:3, sparse-0.9, ga: ga diverged" in line and "run the same command again" in line
    for model in ("dense", "sparse-0.9"):
        ga = out / "seed-0" / "class-3" / model / "ga"
        assert not (ga / "step.json").is_file() and len(json.loads((ga / "workers.json").read_text())) == 1
        ft = json.loads((out / "seed-0" / "class-3" / model / "ft" / "step.json").read_text())
        assert ft["result"]["config"]["lr"] == 0.02
    rerun = smu(
        "run", "quickstart", *QUICK, "unlearn.ft.lr=0.02", "--out", out, "--executor", "ray", "--json"
    )
    assert rerun.exit_code == 0, rerun.output
    assert json.loads(rerun.stdout)["steps"]["ran"] == 2  # GA with its lr back; FT was kept


def test_an_audit_on_ray_judges_as_the_serial_audit_does(local_ray, pruned_cnn, tmp_path):
    model = pruned_cnn / "dense" / "model.safetensors"
    args = ["audit", "--model", model, "--forget", "class:3", "--method", "none", "--models", "3"]
    args += ["--retrain-epochs", "2", "--retrain-batch-size", "64", "--json"]
    serial = smu(*args, "--threads", "1", "--out", tmp_path / "serial")  # as each of the Ray steps below
    on_ray = smu(*args, "--out", tmp_path / "ray", "--executor", "ray", "--cpus-per-step", "1")
    assert serial.exit_code == 0 and on_ray.exit_code == 0, on_ray.output
    serial, on_ray = json.loads(serial.stdout), json.loads(on_ray.stdout)
    keys = ("forgetting_quality", "score", "ulira", "tow", "unlearned", "retrained", "worst", "steps")
    assert {k: on_ray[k] for k in keys} == {k: serial[k] for k in keys}
    assert on_ray["steps"] == {"total": 7, "ran": 7, "reused": 0}  # 3 + 3 members and the verdict
    assert (tmp_path / "ray" / "reference" / "seed-1" / "workers.json").is_file()


def test_no_step_starts_before_the_steps_it_needs_are_done(local_ray, tmp_path):
    plan = Plan(chain_plan, {"folder": str(tmp_path)})
    steps = chain_plan(str(tmp_path))
    assert any(len(s.needs) > 1 for s in steps) and any(not s.needs for s in steps[1:])
    done = make_executor("ray").run(steps, plan, Reporter())
    results = {step.key: result for step, result, _ in done}
    assert [s.key for s, _, _ in done] == [s.key for s in steps]
    for step in steps:
        for need in step.needs:
            assert results[need]["ended"] <= results[step.key]["began"], (step.title, need)


def test_a_warning_in_a_ray_worker_reaches_the_driver(local_ray, tmp_path):
    plan = Plan(chain_plan, {"folder": str(tmp_path), "warn": "s3"})
    with pytest.warns(SmuWarning, match="s3 has something to say"):
        make_executor("ray").run(chain_plan(str(tmp_path), warn="s3"), plan, Reporter())


def test_a_failed_step_stops_only_the_steps_that_need_it(local_ray, tmp_path):
    steps = chain_plan(str(tmp_path), fail="s5")
    needing: set[str] = set()
    for step in steps:  # what needs s5, directly or through another step
        if {"key-s5", *needing} & set(step.needs):
            needing.add(step.key)
    assert needing and len(needing) < 6
    with pytest.raises(SmuError) as e:
        make_executor("ray").run(steps, Plan(chain_plan, {"folder": str(tmp_path), "fail": "s5"}), Reporter())
    assert str(e.value).startswith("1 of 12 steps failed: s5: s5 diverged; lower its lr")
    assert f"; {len(needing)} steps that need them did not run" in str(e.value)
    for step in steps:
        assert (step.folder / "step.json").is_file() == (step.key not in needing | {"key-s5"}), step.title
    assert len(json.loads((tmp_path / "s5" / "workers.json").read_text())) == 1  # not retried


def test_every_shipped_recipe_lists_the_steps_a_step_needs_before_it():
    for recipe in shipped():
        steps = Planner(load_recipe(recipe.name), Path("/nonexistent"), Reporter()).steps()
        seen: set[str] = set()
        for step in steps:
            assert set(step.needs) <= seen, (recipe.name, step.title)
            seen.add(step.key)
        kinds = {s.tags["kind"] for s in steps if s.needs}
        assert kinds and "models" not in kinds, recipe.name


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--cpus-per-step", "0"], 2, "--cpus-per-step 0 must be > 0"),
        (["--gpus-per-step", "-1"], 2, "--gpus-per-step -1 must be >= 0"),
        (["--address", "nowhere"], 2, "--address 'nowhere' is not auto, local, HOST:PORT or ray://HOST:PORT"),
        (["--address", "127.0.0.1:9"], 1, "--address '127.0.0.1:9': nothing answers there"),
        (["--address", "ray://127.0.0.1:9"], 1, "nothing answers there"),
        (["--executor", "dask"], 2, "--executor 'dask' is not one of serial, local, ray"),
    ],
)
def test_bad_executor_options_are_one_line_errors_before_anything_runs(args, code, message, tmp_path):
    pytest.importorskip("ray")
    executor = [] if "--executor" in args else ["--executor", "ray"]
    result = smu("run", "quickstart", "--out", tmp_path / "run", *executor, *args)
    assert result.exit_code == code and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_executor_options_without_executor_ray_are_a_usage_error(tmp_path):
    result = smu("run", "quickstart", "--out", tmp_path / "run", "--address", "auto")
    assert result.exit_code == 2 and "need another --executor" in result.stderr


def python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)


def test_without_ray_the_ray_executor_is_one_line_saying_how_to_install_it(tmp_path):
    code = (
        "import sys\nsys.modules['ray'] = None  # as if it were not installed\nfrom smu.cli.app import main\n"
        "main(sys.argv[1:])"
    )
    proc = python(code, "run", "quickstart", "--executor", "ray", "--out", str(tmp_path / "run"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "Error: --executor ray needs Ray, which is not installed; pip install 'smu[ray]'"
    ]
    assert not (tmp_path / "run").exists()


def test_smu_and_the_serial_executor_never_import_ray(tmp_path):
    code = textwrap.dedent(
        """
        import sys
        import smu, smu.execution.steps, smu.cli.run, smu.cli.audit, smu.workflows.recipe
        from smu.cli.app import main
        for args in (["--help"], ["run", "--help"], ["audit", "--help"], ["run", "quickstart", "--dry-run"]):
            try:
                main([*args, *(["--out", sys.argv[1]] if "quickstart" in args else [])])
            except SystemExit as e:
                assert e.code == 0, (args, e.code)
        print("ray" in sys.modules, file=sys.stderr)
        """
    )
    proc = python(code, str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "False"


def test_tuning_trials_run_on_ray_workers_against_one_study(local_ray, pruned_cnn, tmp_path):
    optuna = pytest.importorskip("optuna")
    out = tmp_path / "tune"
    args = ["tune", "--model", pruned_cnn / "round-1" / "model.safetensors", "--forget", "class:3"]
    args += ["--method", "ga", "--batch-size", "64", "--retrain-epochs", "2", "--space", "epochs=1:2"]
    args += ["--trials", "4", "--no-prune", "--workers", "2", "--out", out, "--json"]
    result = smu(*args, "--executor", "ray", "--cpus-per-step", "1")
    assert result.exit_code == 0, result.output
    tuned = json.loads(result.stdout)
    assert tuned["steps"] == {"total": 5, "ran": 5}  # 2 references, 2 study workers, the held-out run
    study = optuna.load_study(study_name=tuned["study_name"], storage=f"sqlite:///{out / 'study.db'}")
    # Both workers ran as Ray tasks; the trials are theirs (one may find the study full when it starts).
    tasks = [
        json.loads((out / "ga" / "workers" / f"worker-{i}" / "workers.json").read_text()) for i in (0, 1)
    ]
    processes = {attempt["worker"] for attempts in tasks for attempt in attempts}
    assert len(tasks) == 2 and not any(p.endswith(f":{os.getpid()}") for p in processes)
    assert {t.user_attrs["worker"] for t in study.get_trials()} <= processes
    assert 4 <= len(study.get_trials()) <= 5  # a worker may start one more while the other finishes
    # without --executor ray, more than one worker is refused
    refused = smu(*args[:-3], "--out", tmp_path / "no")
    assert refused.exit_code == 2 and "--workers 2 needs --executor local or ray" in refused.stderr
