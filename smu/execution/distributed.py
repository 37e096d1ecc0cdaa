"""Data-parallel runs under torchrun: which rank this process is, its process group, and the few
collectives the rest of smu needs.

``torchrun --nproc-per-node N -m smu prune ...`` starts N copies of the command and tells each its
place in the environment (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR/PORT). Every rank runs the same
code on the same data in the same order; they differ only where this module says so:

- :func:`smu.execution.engine.fit` gives each rank its part of every global batch (:func:`share`) and averages
  the gradients with DistributedDataParallel, so the updates are those of one process;
- only rank 0 touches the file system (:func:`on_main`: the others wait there and take its outcome)
  and the terminal (``smu.cli.ui``); every rank may read what rank 0 wrote, so on several machines the run
  folder must be on a file system they all see;
- evaluation (:func:`smu.execution.engine.predict`) and the gradient sums of FF, IU, SSD and SalUn are
  split over the ranks and added up (:func:`rows`, :func:`gather_rows`, :func:`sum_`).

In a single process every function here is a no-op; ``torch.distributed`` is imported only by a run
that torchrun started with more than one process.
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import os
import re
import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, TypeVar

from smu.core.errors import DistributedError, SmuError, UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn

T = TypeVar("T")

TIMEOUT_ENV = "SMU_DDP_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800.0
"""How long a rank waits for the others in a collective before it gives up (torch's own default for
gloo): long enough for rank 0 to download a dataset while the others wait."""

RESUME_HINT = "the run stopped; rerun the same command with --resume to continue from the last checkpoint"


def world_size() -> int:
    """Processes in the run: torchrun's WORLD_SIZE, 1 without torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's place among them (0 without torchrun); read from the environment, so the terminal
    layer knows it before anything is initialised."""
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Rank 0: the one that writes files and talks to the terminal."""
    return rank() == 0


def active() -> bool:
    """True once :func:`setup` has joined a process group of more than one rank."""
    if world_size() < 2:
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def timeout_s() -> float:
    """``$SMU_DDP_TIMEOUT`` seconds, else :data:`DEFAULT_TIMEOUT_S`."""
    text = os.environ.get(TIMEOUT_ENV, "")
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UsageError(
            f"{TIMEOUT_ENV}={text!r} is not a positive number of seconds", hint="unset or fix it"
        )
    return value


def setup(device: torch.device, spec: str) -> torch.device:
    """Under torchrun with more than one process, join the process group (once) and return this rank's
    device: ``cuda:LOCAL_RANK`` with NCCL on GPUs, the CPU with gloo. ``spec`` is what --device said."""
    import torch
    import torch.distributed as dist

    if device.type == "mps":
        if spec.strip().lower() != "auto":
            raise UsageError(
                f"--device {spec!r}: torch.distributed has no backend for MPS", hint="use --device cpu"
            )
        device = torch.device("cpu")
    if device.type == "cuda":
        if device.index is not None and ":" in spec:
            raise UsageError(
                f"--device {spec!r} under torchrun would put every rank on one GPU",
                hint="pass --device cuda (or auto): each rank takes cuda:LOCAL_RANK",
            )
        local, count = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
        if local >= count:
            raise UsageError(
                f"rank {rank()} is local rank {local}, but this machine has {count} GPU(s)",
                hint=f"start at most {count} processes per machine (--nproc-per-node {count})",
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_available():
        raise UsageError("this build of torch has no torch.distributed", hint="run without torchrun")
    if dist.is_initialized():
        if dist.get_backend() != backend:
            raise UsageError(
                f"this run's ranks already use {dist.get_backend()}, not {backend} for {device.type}",
                hint="use one --device for the whole run",
            )
        return device
    # Binding the GPU (torch >= 2.3) lets NCCL set up at once and tells barriers which device to use.
    bind = device.type == "cuda" and "device_id" in inspect.signature(dist.init_process_group).parameters
    try:
        dist.init_process_group(
            backend, timeout=timedelta(seconds=timeout_s()), **({"device_id": device} if bind else {})
        )
    except (RuntimeError, ValueError) as e:  # no rendezvous: a wrong address, a rank that never came
        raise stopped(f"rank {rank()} could not join the others: {one_line(e)}") from e
    # torchrun ends every rank with SIGTERM when one fails: say so in one line instead of dying silently.
    signal.signal(signal.SIGTERM, _terminated)
    if not is_main():  # the same warnings as rank 0's, which shows them
        warnings.simplefilter("ignore")
    # A conv weight with one input channel is both contiguous and channels-last; its gradient may take
    # the other layout than DDP's bucket, which costs one small copy and says nothing else. (Set once:
    # changing the filters makes Python forget which warnings it has already shown.)
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    atexit.register(_close)
    return device


_failed = False


def stopped(message: str, hint: str = RESUME_HINT) -> DistributedError:
    """The error of a run whose ranks can no longer work together; the exit then skips the goodbye."""
    global _failed
    _failed = True
    return DistributedError(message, hint=hint)


def _terminated(signum: int, frame: Any) -> None:
    if not is_main():  # the rank that failed has said why; rank 0 speaks for the ones stopped with it
        raise SystemExit(1)
    raise stopped("stopped by SIGTERM (torchrun stops every rank when one fails)")


def _close() -> None:
    """Leave the process group on a normal exit; after a failure a peer may be gone, and waiting for it
    would only hang the exit."""
    import torch.distributed as dist

    if dist.is_initialized() and not _failed:
        with contextlib.suppress(RuntimeError):
            dist.destroy_process_group()


def leave(code: object) -> NoReturn:
    """End this rank at once with exit status ``code``, after leaving the process group. Python's own
    shutdown can abort the process (SIGABRT) when a gloo thread frees its last finished work while the
    interpreter is being torn down; nothing is left to tear down after a command."""
    status = code if isinstance(code, int) else 0 if code is None else 1
    sys.stdout.flush()
    sys.stderr.flush()
    if status == 0:  # all ranks are here: rank 0 hosts the store the others still talk to until then
        with contextlib.suppress(RuntimeError):
            barrier()
        _close()
    os._exit(status)


def one_line(e: BaseException) -> str:
    """A backend's message without its source location and its advice, on one line."""
    text = " ".join(str(e).split())
    text = re.sub(r"^\[[^\]]*\.(?:cc|cpp|h|hpp):\d+\]\s*", "", text)
    return text.split(". This is typically")[0][:300]


def lost(e: BaseException) -> DistributedError | None:
    """The one-line error for a failed collective (a rank died or timed out), else None."""
    if world_size() < 2 or not isinstance(e, RuntimeError):
        return None
    import torch.distributed as dist

    failed_collective = re.search(r"gloo|NCCL|[Cc]onnection|[Tt]imed out|timeout", str(e))
    if not (isinstance(e, dist.DistError) or failed_collective):
        return None
    return stopped(f"lost contact with another rank ({one_line(e)})")


# ── Collectives (no-ops in a single process) ────────────────────────────────────────────────────────


def barrier() -> None:
    if active():
        import torch.distributed as dist

        dist.barrier()


def on_main(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn`` on rank 0 only, once every rank has got here, and give every rank its result (or raise
    its SmuError everywhere). For file-system changes: checks made before the call see the same files
    on every rank, and what rank 0 wrote is there for all after it. ``fn`` must not use collectives."""
    if not active():
        return fn(*args, **kwargs)
    import torch.distributed as dist

    dist.barrier()
    outcome: list[Any] = [None]
    failure: BaseException | None = None
    if is_main():
        try:
            outcome = [("ok", fn(*args, **kwargs))]
        except Exception as e:
            failure = e
            if isinstance(e, SmuError):
                outcome = [("error", e.message, e.hint, e.exit_code)]
            else:
                outcome = [("error", f"rank 0 failed: {one_line(e)}", None, 1)]
    dist.broadcast_object_list(outcome, src=0)
    if failure is not None:
        raise failure
    if outcome[0][0] == "ok":
        return outcome[0][1]
    _, message, hint, code = outcome[0]
    error = SmuError(message, hint=hint)
    error.exit_code = code  # the same exit code as rank 0's
    raise error


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block before the others (a download into a shared folder happens once)."""
    if not is_main():
        barrier()
    try:
        yield
    finally:
        if is_main():
            barrier()


def same(value: T, what: str) -> T:
    """``value``, checked to be equal on every rank (where it comes from a file every rank reads)."""
    if active():
        import torch.distributed as dist

        values: list[Any] = [None] * world_size()
        dist.all_gather_object(values, value)
        if any(v != values[0] for v in values):
            raise stopped(
                f"the ranks disagree on {what}: {values}",
                hint="on several machines the --out folder must be on a file system all of them see",
            )
    return value


def sum_(tensors: list[torch.Tensor]) -> None:
    """Add each tensor up over the ranks, in place."""
    if active():
        import torch.distributed as dist

        for t in tensors:
            dist.all_reduce(t)


def sum_values(values: list[float], device: torch.device) -> list[float]:
    """Numbers added up over the ranks."""
    if not active():
        return values
    import torch

    t = torch.tensor(values, dtype=torch.float64, device=device)
    sum_([t])
    return t.tolist()


def broadcast_(tensors: list[torch.Tensor]) -> None:
    """Overwrite each tensor with rank 0's, in place."""
    if active():
        import torch.distributed as dist

        for t in tensors:
            dist.broadcast(t, src=0)


def broadcast_model(model: nn.Module) -> None:
    """Every rank takes rank 0's weights and buffers: the model rank 0 writes is the one all go on with."""
    if active():
        import torch

        with torch.no_grad():
            broadcast_([t for t in model.state_dict().values() if t.numel()])


# ── Splitting work over the ranks ───────────────────────────────────────────────────────────────────


class Share(NamedTuple):
    """This rank's part of a global batch of n images, ``[lo, hi)``."""

    lo: int
    hi: int
    scale: float
    """What this rank's mean loss is multiplied by so that DDP's average of the gradients over the ranks
    is the gradient of the mean over the global batch: world · (hi − lo) / n."""
    counts: bool
    """Whether its images count in the epoch's loss and accuracy (a batch every rank takes counts once)."""


def share(n: int) -> Share:
    """Contiguous, nearly equal parts of a global batch, one per rank, each of at least 2 images
    (BatchNorm needs two per rank); a batch too small for that is taken whole by every rank."""
    w = world_size() if active() else 1
    if w == 1 or n < 2 * w:
        return Share(0, n, 1.0, w == 1 or is_main())
    r = rank()
    lo, hi = n * r // w, n * (r + 1) // w
    return Share(lo, hi, w * (hi - lo) / n, True)


def rows(n: int) -> tuple[int, int]:
    """This rank's rows ``[lo, hi)`` of n to evaluate: all of them in a single process, or when n is
    smaller than the number of ranks."""
    w = world_size() if active() else 1
    if w == 1 or n < w:
        return 0, n
    return n * rank() // w, n * (rank() + 1) // w


def gather_rows(local: torch.Tensor, n: int) -> torch.Tensor:
    """Every rank's :func:`rows` put back together in order (``local`` unchanged when not split)."""
    w = world_size() if active() else 1
    if w == 1 or n < w:
        return local
    import torch
    import torch.distributed as dist

    width = -(-n // w)  # all_gather wants equal sizes: pad each part to the largest
    padded = local.new_zeros((width, *local.shape[1:]))
    padded[: len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(w)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[: n * (r + 1) // w - n * r // w] for r, p in enumerate(parts)])


def spread() -> tuple[int, int]:
    """(rank, world): batch i of a sum over a dataset is this rank's when i % world == rank."""
    return (rank(), world_size()) if active() else (0, 1)


# ── Training ────────────────────────────────────────────────────────────────────────────────────────


def data_parallel(model: nn.Module) -> nn.Module:
    """``model`` behind DistributedDataParallel: it starts from rank 0's weights and averages the
    gradients over the ranks in backward, overlapped with the computation."""
    from torch.nn.parallel import DistributedDataParallel

    device = next(model.parameters()).device
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def check_sync_bn() -> None:
    """--sync-bn needs NCCL: torch's SyncBatchNorm runs on GPUs only."""
    if active():
        import torch.distributed as dist

        if dist.get_backend() != "nccl":
            raise UsageError(
                "--sync-bn needs CUDA GPUs: torch's SyncBatchNorm does not run on the CPU (gloo)",
                hint="leave it out: each rank then normalises with its own part of the batch, or use a "
                "model without BatchNorm (--arch cnn_gn)",
            )


@contextlib.contextmanager
def synced_batchnorm(model: nn.Module) -> Iterator[None]:
    """Inside the block, every BatchNorm of ``model`` is a SyncBatchNorm sharing its weights and running
    statistics, so each normalises with the statistics of the global batch; the ordinary modules are put
    back afterwards (saved models and evaluation stay plain)."""
    from torch import nn

    swapped = []
    for name, m in list(model.named_modules()):
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, nn.SyncBatchNorm):
            owner, _, child = name.rpartition(".")
            synced = nn.SyncBatchNorm(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
            synced.weight, synced.bias = m.weight, m.bias
            synced.running_mean, synced.running_var = m.running_mean, m.running_var
            synced.num_batches_tracked = m.num_batches_tracked
            synced.train(m.training)
            setattr(model.get_submodule(owner), child, synced)
            swapped.append((owner, child, m))
    try:
        yield
    finally:
        for owner, child, m in swapped:
            setattr(model.get_submodule(owner), child, m)


def has_batchnorm(model: nn.Module) -> bool:
    from torch import nn

    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
