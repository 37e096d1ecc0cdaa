"""torch's thread count: chosen by smu's rules (--threads, torchrun, OMP_NUM_THREADS, physical cores, CPU
quota), applied while a command computes, restored after it, and recorded in the manifest."""

import json
from pathlib import Path

import pytest
import torch
from conftest import smu

from smu.execution import threads


def fake_topology(root: Path, cores: list[tuple[int, int]]) -> Path:
    """/sys/devices/system/cpu for logical CPUs 0..n-1 on the (package, core) pairs given."""
    for cpu, (package, core) in enumerate(cores):
        topology = root / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text(f"{package}\n")
        (topology / "core_id").write_text(f"{core}\n")
    return root


@pytest.fixture
def four_cpus_on_two_cores(tmp_path, monkeypatch):
    """A machine of 4 logical CPUs, two hyper-threads on each of 2 cores, all usable; no cgroup."""
    sys_cpu = fake_topology(tmp_path / "cpu", [(0, 0), (0, 1), (0, 0), (0, 1)])
    monkeypatch.setattr(threads, "usable_cpus", lambda: {0, 1, 2, 3})
    return {"sys_cpu": sys_cpu, "cgroup": tmp_path / "no-cgroup"}


def test_hyper_threads_of_one_core_count_once(tmp_path):
    sys_cpu = fake_topology(tmp_path, [(0, 0), (0, 1), (0, 0), (0, 1), (1, 0), (1, 0)])
    assert threads.physical_cores({0, 1, 2, 3, 4, 5}, sys_cpu) == 3  # 2 cores on package 0, 1 on package 1
    assert threads.physical_cores({0, 2}, sys_cpu) == 1  # two hyper-threads of one core
    assert threads.physical_cores({0, 9}, sys_cpu) is None  # CPU 9's topology cannot be read


def test_without_any_setting_the_physical_cores_are_chosen(four_cpus_on_two_cores):
    chosen = threads.choose(env={}, **four_cpus_on_two_cores)
    assert (chosen.count, chosen.reason) == (2, "physical cores")
    assert "2 physical cores among the 4 CPUs" in chosen.detail


def test_threads_option_wins_over_everything(four_cpus_on_two_cores):
    env = {"OMP_NUM_THREADS": "3", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}
    chosen = threads.choose(5, env=env, **four_cpus_on_two_cores)
    assert (chosen.count, chosen.reason) == (5, "--threads")


def test_omp_num_threads_set_by_the_user_is_respected(four_cpus_on_two_cores):
    chosen = threads.choose(env={"OMP_NUM_THREADS": "3"}, **four_cpus_on_two_cores)
    assert (chosen.count, chosen.reason, chosen.detail) == (3, "OMP_NUM_THREADS", "OMP_NUM_THREADS=3")
    nested = threads.choose(env={"OMP_NUM_THREADS": "4,2"}, **four_cpus_on_two_cores)
    assert nested.count == 4  # a nested list's first level is the one torch's parallel regions use


@pytest.mark.parametrize("value", ["", "0", "-2", "two"])
def test_an_omp_num_threads_openmp_would_ignore_is_ignored(value, four_cpus_on_two_cores):
    chosen = threads.choose(env={"OMP_NUM_THREADS": value}, **four_cpus_on_two_cores)
    assert chosen.reason == "physical cores"


def test_under_torchrun_the_cores_are_shared_among_the_local_ranks(four_cpus_on_two_cores):
    env = {"WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"}  # two machines, two ranks on each
    chosen = threads.choose(env=env, **four_cpus_on_two_cores)
    assert (chosen.count, chosen.reason) == (1, "torchrun")
    assert "shared by 2 ranks" in chosen.detail
    one_rank_a_machine = threads.choose(
        env={"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "1"}, **four_cpus_on_two_cores
    )
    assert one_rank_a_machine.count == 2


def test_under_torchrun_its_omp_num_threads_is_taken(four_cpus_on_two_cores):
    # torchrun sets OMP_NUM_THREADS=1 for its processes when the user set nothing
    env = {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}
    chosen = threads.choose(env=env, **four_cpus_on_two_cores)
    assert (chosen.count, chosen.reason) == (1, "torchrun")


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1.0),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
    ],
)
def test_the_cgroup_cpu_quota_is_read_from_v2_and_v1(tmp_path, files, expected):
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text("1:cpu,cpuacct:/\n0::/\n")
    assert threads.cpu_quota(root, proc) == expected


def test_a_cpu_quota_below_the_cores_caps_the_threads(four_cpus_on_two_cores, tmp_path):
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "cpu.max").write_text("50000 100000\n")  # half a CPU
    chosen = threads.choose(env={}, sys_cpu=four_cpus_on_two_cores["sys_cpu"], cgroup=cgroup)
    assert (chosen.count, chosen.reason) == (1, "CPU quota")
    assert "quota of 0.5 CPUs" in chosen.detail


def test_threads_below_one_are_refused():
    with pytest.raises(threads.UsageError, match="--threads 0"):
        threads.choose(0)


def test_the_choice_applies_inside_the_block_and_torch_s_count_comes_back_after():
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with threads.applied(other) as chosen:
        assert torch.get_num_threads() == other and threads.current() == chosen
    assert torch.get_num_threads() == before
    assert threads.current().reason == "torch"  # outside any command: unexplained, torch's own count


def test_a_busy_machine_suggests_fewer_threads_only_for_the_default(monkeypatch):
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (6.5, 6.0, 5.0))
    default = threads.Threads(2, "physical cores", "")
    assert "load average 6.5 on 2 cores" in threads.busy_hint(default)
    assert threads.busy_hint(threads.Threads(2, "--threads", "")) is None  # the user chose
    assert threads.busy_hint(threads.Threads(1, "physical cores", "")) is None  # nothing fewer to try
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (0.4, 0.3, 0.2))
    assert threads.busy_hint(default) is None


FAST = ["--dataset", "digits", "--arch", "cnn", "--epochs", "2", "--batch-size", "128", "--rewind-epoch", "1"]


def test_threads_option_is_what_training_runs_with_and_the_manifest_says_so(tmp_path, monkeypatch):
    import smu.workflows.prune as prune

    seen = []
    fit = prune.fit

    def spying_fit(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return fit(*args, **kwargs)

    monkeypatch.setattr(prune, "fit", spying_fit)
    want = 1 if torch.get_num_threads() != 1 else 2  # not what the process computes with anyway
    before = torch.get_num_threads()
    result = smu("prune", *FAST, "--rate", "0.5", "--threads", want, "--out", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.output
    assert seen and set(seen) == {want}  # the dense training and the retraining after pruning
    assert torch.get_num_threads() == before
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["threads"] == {"count": want, "reason": "--threads", "detail": f"--threads {want}"}
    assert f"--threads {want}" in manifest["command"]  # the provenance replays it


def test_the_manifest_records_the_default_choice_and_its_reason(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    result = smu("prune", *FAST, "--rate", "0.5", "--out", tmp_path / "run", "-q")
    assert result.exit_code == 0, result.output
    recorded = json.loads((tmp_path / "run" / "manifest.json").read_text())["threads"]
    assert recorded == threads.choose(env={}).as_dict()
    assert recorded["reason"] in ("physical cores", "CPU quota")


def test_a_recipe_run_reports_its_threads(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    tiny = ["seeds=[0]", "train.epochs=1", "prune.rewind_epoch=0"]
    tiny += ["unlearn={retrain: {epochs: 1, batch_size: 64}, ga: {epochs: 1, batch_size: 64}}"]
    result = smu("run", "quickstart", *tiny, "--out", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["threads"]["reason"] == "OMP_NUM_THREADS"
    assert "1 thread (OMP_NUM_THREADS)" in (tmp_path / "run" / "report.md").read_text()
