"""How many threads torch computes with (intra-op), chosen on purpose instead of left to torch.

torch's default is one thread per CPU its OpenMP runtime sees: hyper-threads count as cores, a
container's CPU quota is not read, and every process on the machine (torchrun's ranks, other jobs) takes
them all. Threads that outnumber the free cores wait for each other at every parallel region: on 2 cores
busy with other work, the demo's training step ran several times slower with 2 threads than with 1
(docs/PERFORMANCE.md, section 13). The choice, the first rule that applies:

1. ``--threads N``: N.
2. Under torchrun: ``OMP_NUM_THREADS`` if set (torchrun sets 1 when it starts several processes and the
   user set nothing), else the physical cores divided among the ranks on this machine.
3. ``OMP_NUM_THREADS`` set by the user: that, as torch itself would.
4. The physical cores this process may run on (its CPU affinity, hyper-threads counted once), at most
   the cgroup's CPU quota, at least 1.

Ray CPU steps get as many threads as CPUs Ray gave them (``smu.execution.ray_executor``). On a CPU the
thread count changes the order of float sums, and so a trained model's last bits: the choice and its
reason go into every manifest.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from pathlib import Path

from smu.core.errors import UsageError

SYS_CPU = Path("/sys/devices/system/cpu")
CGROUP = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Threads:
    """The intra-op thread count a run computes with, and why."""

    count: int
    reason: str
    """Which rule chose it: ``--threads``, ``torchrun``, ``OMP_NUM_THREADS``, ``physical cores``, ``CPU
    quota`` or ``Ray --cpus-per-step``."""
    detail: str
    """The facts behind it, in words (the cores found, the variable's value)."""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def usable_cpus() -> set[int]:
    """The logical CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def physical_cores(cpus: set[int], sys_cpu: Path = SYS_CPU) -> int | None:
    """How many distinct physical cores ``cpus`` lie on (hyper-threads of one core count once), from
    the kernel's topology files; None where they cannot be read (not Linux)."""
    cores = set()
    for cpu in cpus:
        topology = sys_cpu / f"cpu{cpu}" / "topology"
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return None
        cores.add((package, core))
    return len(cores) or None


def cpu_quota(cgroup: Path = CGROUP, proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """The CPUs' worth of time the cgroup lets this process use (cgroup v2 ``cpu.max``, v1
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``); None when there is no limit or no cgroup to read."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    own: dict[str, str] = {}  # controller ("" for v2) -> this process's cgroup path
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            own[controller] = path.lstrip("/")
    places = []
    if "" in own:
        places.append((cgroup / own[""] / "cpu.max", None))
    places.append((cgroup / "cpu.max", None))
    if "cpu" in own:
        for folder in ("cpu", "cpu,cpuacct"):
            places.append((cgroup / folder / own["cpu"] / "cpu.cfs_quota_us", "cpu.cfs_period_us"))
    for path, period_name in places:
        try:
            if period_name is None:
                quota, _, period = path.read_text().strip().partition(" ")
            else:
                quota, period = path.read_text().strip(), (path.parent / period_name).read_text().strip()
        except OSError:
            continue
        if quota in ("max", "-1") or not period:
            return None
        return int(quota) / int(period)
    return None


def omp_threads(env: Mapping[str, str]) -> int | None:
    """OMP_NUM_THREADS as a count (its first level for a nested list such as "4,2"); None when unset or
    not a positive number, as OpenMP ignores it then."""
    text = env.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def machine_cores(sys_cpu: Path = SYS_CPU, cgroup: Path = CGROUP) -> Threads:
    """Rule 4: physical cores of the usable CPUs, capped by the CPU quota."""
    cpus = usable_cpus()
    cores = physical_cores(cpus, sys_cpu)
    found = (
        f"{cores} physical core{'s' * (cores != 1)} among the {len(cpus)} CPUs this process may use"
        if cores
        else f"{len(cpus)} CPUs this process may use (no CPU topology to tell hyper-threads)"
    )
    count = cores or len(cpus)
    quota = cpu_quota(cgroup)
    if quota is not None and math.ceil(quota) < count:
        return Threads(max(1, math.ceil(quota)), "CPU quota", f"a cgroup quota of {quota:g} CPUs; {found}")
    return Threads(max(1, count), "physical cores", found)


def choose(
    requested: int | None = None,
    env: Mapping[str, str] | None = None,
    sys_cpu: Path = SYS_CPU,
    cgroup: Path = CGROUP,
) -> Threads:
    """The thread count by the rules of this module's docstring (``env``: the environment to read)."""
    env = os.environ if env is None else env
    if requested is not None:
        if requested < 1:
            raise UsageError(f"--threads {requested} must be at least 1", hint="pass --threads 1 or more")
        return Threads(requested, "--threads", f"--threads {requested}")
    omp = omp_threads(env)
    if int(env.get("WORLD_SIZE", "1")) > 1:
        if omp is not None:
            return Threads(omp, "torchrun", f"OMP_NUM_THREADS={omp} (torchrun sets 1 unless the user set it)")
        local = max(1, int(env.get("LOCAL_WORLD_SIZE", "1")))
        cores = machine_cores(sys_cpu, cgroup)
        shared = f"{cores.detail}, shared by {local} ranks on this machine"
        return Threads(max(1, cores.count // local), "torchrun", shared)
    if omp is not None:
        return Threads(omp, "OMP_NUM_THREADS", f"OMP_NUM_THREADS={env['OMP_NUM_THREADS']}")
    return machine_cores(sys_cpu, cgroup)


_CURRENT: ContextVar[Threads | None] = ContextVar("smu_threads", default=None)


def current() -> Threads:
    """The choice in force (inside :func:`applied`), else what torch computes with now, unexplained."""
    chosen = _CURRENT.get()
    if chosen is not None:
        return chosen
    import torch

    return Threads(torch.get_num_threads(), "torch", "left to torch (no smu command chose it)")


@contextlib.contextmanager
def applied(choice: Threads | int | None = None) -> Iterator[Threads]:
    """Compute with ``choice`` (a :class:`Threads`, or ``--threads``' value, None for the default rules)
    inside the block; torch's previous count is restored after it, so a library caller's own setting
    outlives the call."""
    import torch

    chosen = choice if isinstance(choice, Threads) else choose(choice)
    before = torch.get_num_threads()
    torch.set_num_threads(chosen.count)
    token = _CURRENT.set(chosen)
    try:
        yield chosen
    finally:
        _CURRENT.reset(token)
        torch.set_num_threads(before)


def busy_hint(chosen: Threads) -> str | None:
    """A line for the user when other work already keeps the cores busy and the default gave more than
    one thread: fewer threads then compute faster (an explicit choice is left alone)."""
    if chosen.reason not in ("physical cores", "CPU quota") or chosen.count < 2:
        return None
    if not hasattr(os, "getloadavg"):  # Windows
        return None
    load = os.getloadavg()[0]
    if load < chosen.count:
        return None
    return (
        f"this machine is busy (load average {load:.1f} on {chosen.count} cores): "
        "--threads 1 may run faster (results differ in the last bits)"
    )
