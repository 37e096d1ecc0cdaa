"""Experiment tracking (smu.loggers): what each tracker received, read back with the tracker's own
readers (tests/loggers/readers.py), for live runs, resumed runs, failing trackers and ``smu log``."""

import csv
import json
from pathlib import Path

import pytest
from conftest import said, smu
from readers import mlflow_history, mlflow_runs, tensorboard_scalars, wandb_runs

from smu import loggers
from smu.io.files import sha256_file

pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")
pytest.importorskip("wandb")


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """W&B writes its runs to files; no tracker reaches a network or a store outside tmp_path (W&B stages
    artifacts and keeps a cache under $HOME unless told otherwise)."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home" / name.lower()))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)


def unlearn(model: Path, out: Path, *extra: str):
    result = smu(
        "unlearn", "--model", model, "--forget", "class:3", "--method", "scrub", "--epochs", "2",
        "--batch-size", "64", "--threads", "1", "-o", out, "--json", *extra,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_an_unlearning_run_reaches_every_tracker_with_its_params_curves_and_final_metrics(
    pruned_cnn, tmp_path
):
    model = pruned_cnn / "round-1" / "model.safetensors"
    out = tmp_path / "runs" / "scrub"
    every = ["--log", "csv", "--log", "tensorboard", "--log", "mlflow", "--log", "wandb"]
    result = unlearn(model, out, *every)
    metrics = result["metrics"]

    (run,) = mlflow_runs(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    assert run.data.params["method"] == "scrub" and run.data.params["epochs"] == "2"
    assert run.data.params["command"] == "smu unlearn" and run.data.params["smu_version"]
    assert {k: run.data.tags[k] for k in ("command", "method", "scenario", "model")} == {
        "command": "unlearn", "method": "scrub", "scenario": "class:3", "model": "cnn",
    }  # fmt: skip
    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    assert [step for step, _ in mlflow_history(uri, run.info.run_id, "scrub/loss")] == [1, 2]
    assert [step for step, _ in mlflow_history(uri, run.info.run_id, "scrub/kl_forget")] == [1, 2]
    assert run.data.metrics["metrics/ua"] == pytest.approx(metrics["ua"])
    assert run.data.metrics["metrics/ta"] == pytest.approx(metrics["ta"])
    assert run.info.status == "FINISHED"

    scalars = tensorboard_scalars(out / "tensorboard")
    assert [step for step, _ in scalars["scrub/acc"]] == [1, 2]
    assert scalars["final/metrics/ra"] == [(0, pytest.approx(metrics["ra"]))]

    (offline,) = wandb_runs(out)
    assert offline["config"]["method"] == "scrub"
    epochs = [row["scrub/epoch"] for row in offline["history"] if "scrub/epoch" in row]
    assert epochs == [1, 2]
    assert offline["summary"]["metrics/mia_efficacy"] == pytest.approx(metrics["mia_efficacy"])

    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows if r["name"] == "scrub/ce_retain"] == ["1", "2"]

    # The trackers change nothing smu computes: the same run without them writes the same model.
    plain = unlearn(model, tmp_path / "plain")
    assert sha256_file(Path(plain["model"])) == sha256_file(Path(result["model"]))


def test_a_resumed_run_continues_the_same_tracker_run_and_sends_each_epoch_once(
    pruned_cnn, tmp_path, monkeypatch
):
    from smu.execution import engine

    model = pruned_cnn / "round-1" / "model.safetensors"
    out = tmp_path / "runs" / "ga"
    args = ["unlearn", "--model", model, "--forget", "class:3", "--method", "ga", "--epochs", "4", "-o", out]
    saved = engine._save_checkpoint

    def killed_after_epoch_2(checkpoint, model, opt, epoch):
        saved(checkpoint, model, opt, epoch)
        if epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(engine, "_save_checkpoint", killed_after_epoch_2)
    first = smu(*args, "--log", "mlflow")
    assert first.exit_code == 130, first.output
    monkeypatch.setattr(engine, "_save_checkpoint", saved)
    second = smu(*args, "--log", "mlflow", "--resume", "--json")
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["start_epoch"] == 2

    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    (run,) = mlflow_runs(uri)  # the same run, continued
    assert [step for step, _ in mlflow_history(uri, run.info.run_id, "ga/loss")] == [1, 2, 3, 4]
    assert run.info.status == "FINISHED"
    assert json.loads((out / loggers.JOURNAL).read_text())["ids"]["mlflow"] == run.info.run_id


def test_a_tracker_out_of_reach_is_one_warning_and_the_run_writes_what_it_writes_without_one(
    pruned_cnn, tmp_path, capsys
):
    from smu.cli.app import main

    model = pruned_cnn / "round-1" / "model.safetensors"
    with pytest.raises(SystemExit) as done:  # main(): the console entry point, which shows smu's warnings
        main([
            "unlearn", "--model", str(model), "--forget", "class:3", "--method", "ft", "--epochs", "1",
            "-o", str(tmp_path / "a"), "--threads", "1", "--log", "mlflow", "--tracking-uri", "http://127.0.0.1:9",
        ])  # fmt: skip
    assert done.value.code == 0
    warnings = [line for line in said(capsys.readouterr().err).splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("Warning: tracker mlflow failed"), warnings
    plain = smu(
        "unlearn", "--model", model, "--forget", "class:3", "--method", "ft", "--epochs", "1",
        "-o", tmp_path / "b", "--threads", "1",
    )  # fmt: skip
    assert plain.exit_code == 0, plain.output
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(
        p.name for p in (tmp_path / "b").iterdir()
    )
    assert sha256_file(tmp_path / "a" / "model.safetensors") == sha256_file(
        tmp_path / "b" / "model.safetensors"
    )


def test_smu_log_sends_a_finished_folder_as_the_live_run_sent_it(pruned_cnn, tmp_path):
    model = pruned_cnn / "round-1" / "model.safetensors"
    out = tmp_path / "runs" / "scrub"
    unlearn(model, out, "--log", "mlflow", "--log", "csv")
    live_uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    later_uri = f"sqlite:///{tmp_path / 'later.db'}"
    sent = smu("log", out, "--to", "mlflow", "--tracking-uri", later_uri)
    assert sent.exit_code == 0, sent.output
    (live,), (later,) = mlflow_runs(live_uri), mlflow_runs(later_uri)
    assert later.data.params == live.data.params
    assert later.data.tags["method"] == live.data.tags["method"] == "scrub"
    assert later.data.metrics == pytest.approx(live.data.metrics)
    for key in ("scrub/loss", "scrub/kl_retain"):
        assert mlflow_history(later_uri, later.info.run_id, key) == mlflow_history(
            live_uri, live.info.run_id, key
        )


def test_a_pruning_run_sends_its_epochs_and_rounds_to_tensorboard(tmp_path):
    out = tmp_path / "p"
    result = smu(
        "prune", "--dataset", "digits", "--arch", "cnn", "--method", "imp", "--times", "2", "--epochs", "3",
        "--rewind-epoch", "1", "--log", "tensorboard", "-o", out, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rounds = json.loads(result.stdout)["rounds"]
    scalars = tensorboard_scalars(out / "tensorboard")
    assert [step for step, _ in scalars["dense/loss"]] == [1, 2, 3]
    assert [step for step, _ in scalars["round-2-2/acc"]] == [2, 3]  # rewound to epoch 1
    assert [step for step, _ in scalars["rounds/sparsity"]] == [r["round"] for r in rounds]
    assert [v for _, v in scalars["rounds/sparsity"]] == pytest.approx(
        [r["sparsity"] for r in rounds], abs=0.01
    )


def test_bad_tracker_options_are_one_line_before_anything_runs(pruned_cnn, tmp_path, monkeypatch):
    model = pruned_cnn / "round-1" / "model.safetensors"
    base = ["unlearn", "--model", model, "--forget", "class:3", "--method", "ft", "-o", tmp_path / "x"]
    typo = smu(*base, "--log", "mlfow")
    assert typo.exit_code == 2 and "did you mean 'mlflow'" in typo.stderr
    alone = smu(*base, "--tracking-uri", "sqlite:///x.db")
    assert alone.exit_code == 2 and "--tracking-uri is given without --log" in alone.stderr
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    missing = smu(*base, "--log", "wandb")
    assert missing.exit_code == 2
    assert said(missing.stderr).strip().splitlines() == [
        "Error: --log wandb needs wandb, which is not installed; pip install 'smu[wandb]'"
    ]
    assert not (tmp_path / "x").exists()


class Broken(loggers.Logger):
    """A tracker that opens, then fails on the first epoch it is sent."""

    def __init__(self, settings, run, resume_id):
        self.id = "broken"
        self.calls = 0

    def series(self, label, step, values):
        raise OSError("No space left on device")


def test_a_tracker_failing_mid_run_is_one_warning_and_the_others_get_everything(tmp_path, monkeypatch):
    monkeypatch.setitem(loggers.TRACKERS._load(), "broken", loggers.Tracker("broken", "fails", Broken))
    settings = loggers.settings(["broken", "csv"])
    failed = "tracker broken failed to log .*No space left"
    with (
        pytest.warns(loggers.TrackerWarning, match=failed) as caught,
        loggers.tracked(settings, name="job", folder=tmp_path, params={}, tags={}) as run,
    ):
        for epoch in (1, 2, 3):
            loggers.series("ft", epoch, {"loss": 1.0 / epoch})
        run.final({"metrics/ua": 5.0})
    assert len(caught) == 1
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows[1:4] == ["1,ft/loss,1.0", "2,ft/loss,0.5", "3,ft/loss,0.3333333333333333"]
    assert rows[-1] == ",metrics/ua,5.0"


def test_series_sends_each_step_once_and_names_a_reused_phase_apart(tmp_path):
    settings = loggers.settings(["csv"])
    with loggers.tracked(settings, name="job", folder=tmp_path, params={}, tags={}):
        for epoch in (1, 2):
            loggers.series("ft", epoch, {"loss": epoch})
        for epoch in (1, 2):  # a second model unlearned with ft in the same run
            loggers.series("ft", epoch, {"loss": 10 * epoch})
    with loggers.tracked(settings, name="job", folder=tmp_path, params={}, tags={}):  # resumed after epoch 2
        for epoch in (2, 3):
            loggers.series("ft", epoch, {"loss": epoch})
    names = [line.split(",")[:2] for line in (tmp_path / "metrics.csv").read_text().splitlines()[1:]]
    assert names == [
        ["1", "ft/loss"],
        ["2", "ft/loss"],
        ["1", "ft-2/loss"],
        ["2", "ft-2/loss"],
        ["3", "ft/loss"],
    ]


def test_params_and_numbers_read_a_provenance_string_and_a_result():
    command = "smu unlearn 'a b' --model m.safetensors --method ga --lr 0.001 --aug --no-eval"
    assert loggers.params_of(command) == {
        "command": "smu unlearn", "model": "m.safetensors", "method": "ga", "lr": "0.001", "aug": "true",
        "eval": "false", "argument.0": "a b",
    }  # fmt: skip
    result = {
        "metrics": {"ua": 10.0, "mia": {"confidence": 3}},
        "rounds": [{"round": 1, "sparsity": 20.0}, {"round": 2, "sparsity": 36.0}],
        "config": {"lr": 0.1},
        "revived": 0,
        "ok": True,
        "model": "x",
    }
    assert loggers.numbers(result) == {
        "metrics/ua": 10.0, "metrics/mia/confidence": 3.0, "rounds/1/sparsity": 20.0,
        "rounds/2/sparsity": 36.0, "revived": 0.0,
    }  # fmt: skip


# The quickstart, one seed, short schedules, three of its methods: 7 steps (as tests/execution/test_ray.py).
QUICK = [
    "seeds=[0]",
    "train.epochs=3",
    "unlearn={retrain: {epochs: 2, lr: 0.1, batch_size: 64}, ft: {epochs: 1, lr: 0.05, batch_size: 64}, "
    "ga: {epochs: 2, lr: 3.0e-4, batch_size: 64}}",
]


@pytest.mark.slow
def test_a_recipe_is_a_parent_run_with_a_child_per_step_whatever_process_runs_it(tmp_path):
    from smu.execution.local_executor import LocalExecutor

    out = tmp_path / "runs" / "quick"
    executor = ["--executor", "local"] if LocalExecutor().parallel > 1 else []
    result = smu(
        "run",
        "quickstart",
        *QUICK,
        "log=[tensorboard]",
        "--log",
        "mlflow",
        "--log",
        "wandb",
        "-o",
        out,
        "--json",
        *executor,
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    runs = mlflow_runs(uri)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    titles = [json.loads(p.read_text())["title"] for p in out.rglob("step.json")]
    assert len(runs) == 8 and sorted(r.info.run_name for r in children) == sorted(titles)
    assert parent.data.tags["recipe"] == "quickstart" and parent.data.params["command"] == "smu run"
    # the parent's final metrics are report.json's cells, to its digits
    cell = report["report"][0]["rows"][2]  # ga
    assert cell["method"] == "ga"
    assert parent.data.metrics["class-3/ga/dense/avg_gap"] == cell["cells"]["dense"]["avg_gap"]["mean"]
    assert parent.data.metrics["class-3/ga/sparse-0.9/ua"] == cell["cells"]["sparse-0.9"]["ua"]["mean"]
    (ga,) = [r for r in children if r.info.run_name == "seed 0: class:3, sparse-0.9, ga"]
    assert [step for step, _ in mlflow_history(uri, ga.info.run_id, "ga/loss")] == [1, 2]
    (models,) = [r for r in children if "train dense" in r.info.run_name]
    assert [step for step, _ in mlflow_history(uri, models.info.run_id, "dense/loss")] == [1, 2, 3]
    # TensorBoard (from the recipe's log: key): a sub-folder per step, laid out as the step folders
    scalars = tensorboard_scalars(out / "tensorboard" / "seed-0" / "class-3" / "sparse-0.9" / "ga")
    assert [step for step, _ in scalars["ga/acc"]] == [1, 2]
    # W&B: the recipe's run and one per step, in one group
    offline = wandb_runs(out)
    assert sorted(r["run"]["display_name"] for r in offline) == sorted([*titles, "quick"])
    assert len({r["run"]["group"] for r in offline}) == 1
    (top,) = [r for r in offline if r["run"]["display_name"] == "quick"]
    assert top["run"]["job_type"] == "run" and top["summary"]["class-3/ga/dense/avg_gap"] == pytest.approx(
        cell["cells"]["dense"]["avg_gap"]["mean"]
    )

    # smu log of the finished folder: the same tree and numbers in a fresh store
    later = f"sqlite:///{tmp_path / 'later.db'}"
    assert smu("log", out, "--to", "mlflow", "--tracking-uri", later).exit_code == 0
    again = mlflow_runs(later)
    (top,) = [r for r in again if "mlflow.parentRunId" not in r.data.tags]
    assert (
        len(again) == 8 and top.data.metrics == parent.data.metrics and top.data.params == parent.data.params
    )
    (ga_later,) = [r for r in again if r.info.run_name == ga.info.run_name]
    assert ga_later.data.tags["method"] == "ga"
    assert {k: v for k, v in ga_later.data.metrics.items() if "/" in k and not k.startswith("ga/")} == {
        k: v for k, v in ga.data.metrics.items() if "/" in k and not k.startswith("ga/")
    }


@pytest.mark.slow
def test_an_audit_sends_its_verdict_and_epsilon_histogram_and_smu_log_sends_the_same(pruned_cnn, tmp_path):
    model = pruned_cnn / "dense" / "model.safetensors"
    out = tmp_path / "runs" / "audit"
    result = smu(
        "audit", "--model", model, "--forget", "class:3", "--method", "none", "--models", "3",
        "--retrain-epochs", "2", "--retrain-batch-size", "64", "--threads", "1", "-o", out, "--json",
        "--log", "tensorboard", "--log", "mlflow",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.stdout)
    scalars = tensorboard_scalars(out / "tensorboard")
    assert scalars["final/forgetting_quality"] == [(0, pytest.approx(verdict["forgetting_quality"]))]
    assert scalars["final/ulira/mean"] == [(0, pytest.approx(verdict["ulira"]["mean"]))]
    assert scalars["final/tow/low"] == [(0, pytest.approx(verdict["tow"]["low"]))]
    bins = {
        int(k.rsplit("/", 1)[1]): v[0][1] for k, v in scalars.items() if k.startswith("final/epsilon_bins/")
    }
    assert sorted(bins) == list(range(1, 14)) and sum(bins.values()) == verdict["forget"]["size"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"histograms": 0}).Reload()
    assert events.Tags()["histograms"] == ["epsilon"]
    # the steps: 3 retrained and 3 unlearned members and the verdict, each a sub-folder with its curves
    retrained = tensorboard_scalars(out / "tensorboard" / "reference" / "seed-1")
    assert [step for step, _ in retrained["retrain/loss"]] == [1, 2]

    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    later = f"sqlite:///{tmp_path / 'later.db'}"
    assert smu("log", out, "--to", "mlflow", "--tracking-uri", later).exit_code == 0
    live, sent = mlflow_runs(uri), mlflow_runs(later)
    (top,) = [r for r in live if "mlflow.parentRunId" not in r.data.tags]
    (top_later,) = [r for r in sent if "mlflow.parentRunId" not in r.data.tags]
    assert len(live) == len(sent) == 8
    assert top_later.data.metrics == top.data.metrics and top_later.data.tags["command"] == "audit"


@pytest.mark.slow
def test_a_study_sends_each_trial_as_it_finishes_and_its_chosen_setting(pruned_cnn, tmp_path):
    model = pruned_cnn / "round-1" / "model.safetensors"
    out = tmp_path / "study"
    result = smu(
        "tune", "--model", model, "--forget", "class:3", "--method", "ga", "--trials", "3",
        "--retrain-epochs", "2", "--threads", "1", "-o", out, "--json", "--log", "csv",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    study = json.loads(result.stdout)
    (worker,) = out.glob("ga/workers/*/metrics.csv")
    with worker.open() as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows if r["name"] == "trials/gap"] == ["0", "1", "2"]
    with (out / "metrics.csv").open() as f:
        final = {r["name"]: float(r["value"]) for r in csv.DictReader(f) if not r["step"]}
    assert final["best/number"] == study["best"]["number"]
    assert all(final[f"best/params/{k}"] == pytest.approx(v) for k, v in study["best"]["params"].items())


def test_a_run_without_log_imports_no_tracker(pruned_cnn, tmp_path):
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import sys
        from smu.cli.app import main
        try:
            main(["unlearn", "--model", sys.argv[1], "--forget", "class:3", "--method", "ft", "--epochs", "1",
                  "--no-eval", "-o", sys.argv[2], "-q"])
        except SystemExit as e:
            assert e.code == 0, e.code
        print(sorted(m for m in ("mlflow", "wandb", "tensorboard") if m in sys.modules), file=sys.stderr)
        """
    )
    model = pruned_cnn / "round-1" / "model.safetensors"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(model), str(tmp_path / "u")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "[]"
    assert not (tmp_path / "u" / loggers.JOURNAL).exists()


def test_a_run_continued_with_nothing_left_to_do_sends_nothing_again(tmp_path):
    settings = loggers.settings(["csv"])
    for _ in range(2):  # the second: a recipe run again, every step done before
        with loggers.tracked(settings, name="job", folder=tmp_path, params={}, tags={}) as run:
            loggers.series("ft", 1, {"loss": 0.5})
            run.final({"metrics/ua": 5.0})
    assert (tmp_path / "metrics.csv").read_text().splitlines()[1:] == ["1,ft/loss,0.5", ",metrics/ua,5.0"]


def test_curves_reach_mlflow_while_the_run_goes_on_in_batches(tmp_path, monkeypatch):
    import time

    monkeypatch.setattr(loggers, "FLUSH_S", 0.2)
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    settings = loggers.settings(["mlflow"], tracking_uri=uri)
    with loggers.tracked(settings, name="job", folder=tmp_path / "job", params={}, tags={}) as run:
        assert run.tracking()  # open (the first store of a process takes seconds to make)
        for epoch in (1, 2, 3):
            loggers.series("ft", epoch, {"loss": 1.0 / epoch})
        # the tracking thread flushes within FLUSH_S of the last epoch, while the run goes on
        time.sleep(1.0)
        (live,) = mlflow_runs(uri)
        assert [step for step, _ in mlflow_history(uri, live.info.run_id, "ft/loss")] == [1, 2, 3]
        assert live.info.status == "RUNNING" and run.ids["mlflow"] == live.info.run_id


@pytest.mark.slow
def test_a_sigkilled_run_resumed_sends_every_epoch_once(pruned_cnn, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    model = pruned_cnn / "round-1" / "model.safetensors"
    out = tmp_path / "runs" / "rt"
    # CSV and TensorBoard open at once, so the kill lands early; MLflow and W&B get their points the same
    # way (at a flush), and the in-process resume above reads MLflow back.
    args = ["unlearn", "--model", model, "--forget", "class:3", "--method", "retrain", "--epochs", "40"]
    args += ["--batch-size", "128", "--threads", "1", "-o", out, "--log", "csv", "--log", "tensorboard"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-m", "smu", *map(str, args), "-q"], env=env)
    journal = out / loggers.JOURNAL
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:  # killed once a few epochs are in the journal
        saved = json.loads(journal.read_text()) if journal.is_file() else {}
        if len(saved.get("pending", [])) + saved.get("logged", {}).get("retrain", 0) >= 4:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    resumed = smu(*args, "--resume", "--json")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["start_epoch"] > 0
    with (out / "metrics.csv").open() as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r["name"] == "retrain/loss"]
    assert steps == list(range(1, 41))
    assert [step for step, _ in tensorboard_scalars(out / "tensorboard")["retrain/loss"]] == list(
        range(1, 41)
    )


def test_smu_log_of_a_folder_that_holds_no_run_or_a_broken_file_is_one_line(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    (tmp_path / "empty").mkdir()
    nothing = smu("log", tmp_path / "empty", "--to", "mlflow", "--tracking-uri", uri)
    assert nothing.exit_code == 2 and "holds no manifest.json or report.json" in nothing.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text('{"command": "smu unlearn --method ga", "result": ')
    cut = smu("log", broken, "--to", "csv")
    assert cut.exit_code == 1 and said(cut.stderr).strip().splitlines() == [
        f"Error: {str(broken / 'manifest.json')!r} is not readable JSON (JSONDecodeError); give the --out of "
        "a finished smu run"
    ]
    (broken / "manifest.json").write_text('{"command": "smu unlearn \\"unclosed", "result": [1], "tags": 3}')
    odd = smu("log", broken, "--to", "csv", "--log-dir", tmp_path / "csv", "--json")
    assert odd.exit_code == 0, odd.output  # what can be read is sent; the rest counts as empty
    assert json.loads(odd.stdout)["runs"] == [{"name": "broken", "metrics": 0, "curves": 0}]
    assert "command,smu unlearn" in (tmp_path / "csv" / "params.csv").read_text()
