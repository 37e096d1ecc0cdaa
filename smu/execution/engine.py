"""The one training and evaluation loop every command shares.

A method changes what it trains on, its loss or a hook; it never copies this loop. The loop owns
the optimiser (SGD), the learning-rate schedule, masks, progress and divergence checks.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from smu import loggers
from smu.core.errors import DivergedError, SmuError, SmuWarning, UsageError
from smu.core.masks import Freeze, Mask
from smu.core.names import DEVICES
from smu.core.progress import Reporter
from smu.core.registry import lookup
from smu.core.training import TrainConfig
from smu.data import ImageSet
from smu.data.batches import Augment, batches, to_float
from smu.execution import distributed
from smu.io import schema as S

LossFn = Callable[[torch.Tensor, "Batch", int], torch.Tensor]
"""loss(logits, batch, epoch) -> scalar: the batch gives the targets (``batch.y``) and whatever else
the loss needs (the images for a teacher, a partner batch); the epoch lets a method schedule a term."""


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; ``cuda[:N]`` and ``mps`` must be available. Under
    torchrun with several processes this also joins them (:func:`smu.execution.distributed.setup`): each rank
    gets ``cuda:LOCAL_RANK`` (NCCL) or the CPU (gloo)."""
    device = _device(spec)
    return distributed.setup(device, spec) if distributed.world_size() > 1 else device


def _device(spec: str) -> torch.device:
    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind, _, index = spec.partition(":")
    lookup(dict.fromkeys(DEVICES), kind, "device")
    if kind == "cpu" and not index:
        return torch.device("cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(
                f"--device {spec!r}: CUDA is not available on this machine", hint="use --device cpu (or auto)"
            )
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise UsageError(
                f"--device {spec!r}: no such GPU",
                hint=f"this machine has "
                f"{torch.cuda.device_count()} (cuda:0..cuda:{torch.cuda.device_count() - 1})",
            )
        return torch.device(spec)
    if kind == "mps" and not index:
        if not torch.backends.mps.is_available():
            raise UsageError(
                f"--device {spec!r}: MPS is not available on this machine", hint="use --device cpu (or auto)"
            )
        return torch.device("mps")
    raise UsageError(f"--device {spec!r} is not a device", hint="use auto, cpu, cuda, cuda:N or mps")


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall times measure the work and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@dataclass(frozen=True)
class Runtime:
    """How training steps use the hardware: chosen per run (``--amp``, ``--compile``), not per method.

    The channels-last memory format needs no option: it is on wherever it is faster (:func:`fast_layout`).
    """

    amp: bool = False
    """bf16 autocast for the forward pass and the loss of training steps (no loss scaling needed)."""
    compile: bool = False
    """``torch.compile`` the model for training steps; the first batches pay the compile time."""
    sync_bn: bool = False
    """Under torchrun: BatchNorm normalises with the statistics of the global batch (SyncBatchNorm, CUDA
    only), not each rank's part of it. Nothing changes in a single process."""


_RUNTIME: ContextVar[Runtime] = ContextVar("smu_runtime", default=Runtime())  # noqa: B039 (frozen)


@contextlib.contextmanager
def runtime(amp: bool = False, compile: bool = False, sync_bn: bool = False) -> Iterator[Runtime]:
    """Every :func:`fit` inside the block runs with these settings (commands wrap their work in it)."""
    if sync_bn:
        distributed.check_sync_bn()
    chosen = Runtime(amp=amp, compile=compile, sync_bn=sync_bn)
    token = _RUNTIME.set(chosen)
    try:
        yield chosen
    finally:
        _RUNTIME.reset(token)


def _autocast(device: torch.device, amp: bool) -> Callable[[], contextlib.AbstractContextManager]:
    """What each training step enters: bf16 autocast with ``--amp``, else nothing (checked once)."""
    if not amp:
        return contextlib.nullcontext
    if not torch.amp.is_autocast_available(device.type):
        raise UsageError(f"--amp: autocast is not available on {device.type}", hint="run without --amp")
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UsageError(f"--amp: {torch.cuda.get_device_name(device)} has no bf16", hint="run without --amp")
    return functools.partial(torch.autocast, device.type, dtype=torch.bfloat16)


def _compiled(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model behind ``torch.compile``, with a compiler failure turned into a one-line error."""
    fast = torch.compile(model)

    def forward(x: torch.Tensor) -> torch.Tensor:
        try:
            return fast(x)
        except torch._dynamo.exc.TorchDynamoException as e:  # what tracing and every backend raise
            raise SmuError(
                f"--compile failed: {str(e).splitlines()[0][:200]}",
                hint="run without --compile (it needs a C++ compiler on CPU, Triton on CUDA)",
            ) from e

    return forward


CHANNELS_LAST = ("cpu", "cuda")
"""Devices whose convolutions run faster on channels-last tensors. Measured on a 2-core x86 CPU, one
training step: resnet20 1.2-1.25x, cnn 1.4-1.7x, resnet18 (32x32) 1.4x, vgg16_bn 1.1x; evaluation
1.0-1.7x (docs/PERFORMANCE.md). On CUDA it is what tensor cores want. MPS keeps the default layout."""


@contextlib.contextmanager
def fast_layout(model: nn.Module, device: torch.device) -> Iterator[torch.memory_format]:
    """Give ``model`` channels-last weights inside the block, where that is faster, and yield the
    layout its inputs should have; on leaving, the ordinary layout is restored, so saved tensors,
    state dicts and results of later code look the same whatever the device."""
    if device.type not in CHANNELS_LAST:
        yield torch.contiguous_format
        return
    model.to(memory_format=torch.channels_last)
    try:
        yield torch.channels_last
    finally:
        model.to(memory_format=torch.contiguous_format)


def lr_at(cfg: TrainConfig, epoch: int, step: int = 0, steps_per_epoch: int = 1) -> float:
    """Learning rate at a step; a function of position only, so rewinding an epoch rewinds the schedule."""
    t = epoch + step / steps_per_epoch
    if cfg.schedule == "multistep":
        lr = cfg.lr * 0.1 ** sum(epoch >= m for m in cfg.decreasing_lr)
    elif cfg.schedule == "cosine":
        lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * t / cfg.epochs))
    else:
        lr = cfg.lr
    if cfg.warmup:
        lr *= min(1.0, (t + 1 / steps_per_epoch) / cfg.warmup)
    return lr


OPTIMIZER_STATE = {
    "momentum_buffer": "momentum",
    "exp_avg": "exp_avg",
    "exp_avg_sq": "exp_avg_sq",
    "step": "step",
}
"""The optimisers' state a checkpoint keeps, per parameter: SGD's momentum, Adam's moments and step count
(its state key -> the tensor's name in the file, followed by the parameter's index)."""


def optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser ``cfg`` names (``optimizer``: SGD unless the config declares otherwise)."""
    if getattr(cfg, "optimizer", "sgd") == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )


@dataclass
class Checkpoint:
    """Where :func:`fit` saves its state after every epoch, and what must match to resume from it.

    The state is the model, the optimiser's momentum and the epoch; data order and augmentation come
    from per-epoch seeds, so a run resumed from epoch k is bit-for-bit the run that was interrupted.
    """

    path: Path
    key: str
    """Identifies the training run (options, data, seed); a checkpoint of another run is ignored."""

    def load(self, model: nn.Module, opt: torch.optim.Optimizer) -> int:
        """Restore the saved state if it belongs to this run; return the epoch to start from (0 if none)."""
        from smu.io.tensorfile import read_metadata, read_tensors

        if not self.path.is_file():
            return 0
        try:
            meta = read_metadata(self.path)
        except SmuError:
            return 0  # a checkpoint cut short by a crash: start the step again
        if meta.get(S.KIND) != S.CHECKPOINT or meta.get(S.CHECKPOINT_KEY) != self.key:
            return 0
        tensors = read_tensors(self.path)
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        for i, p in enumerate(model.parameters()):
            for state, saved in OPTIMIZER_STATE.items():
                if f"{saved}.{i}" in tensors:
                    value = tensors[f"{saved}.{i}"]
                    opt.state[p][state] = value if state == "step" else value.to(p.device)
        return int(meta[S.EPOCH])

    def save(self, model: nn.Module, opt: torch.optim.Optimizer, epoch: int) -> None:
        from smu.io.tensorfile import save_tensors

        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        for i, p in enumerate(model.parameters()):
            for state, saved in OPTIMIZER_STATE.items():
                value = opt.state.get(p, {}).get(state)
                if value is not None:
                    tensors[f"{saved}.{i}"] = value
        save_tensors(self.path, tensors, {S.KIND: S.CHECKPOINT, S.CHECKPOINT_KEY: self.key, S.EPOCH: epoch})

    def clear(self) -> None:
        """Remove the checkpoint once the step's result is safely written."""
        distributed.on_main(self.path.unlink, missing_ok=True)


@dataclass
class FitResult:
    """What a call to :func:`fit` did."""

    epochs: int
    """Epochs this call ran (fewer than asked when it resumed from a checkpoint)."""
    start_epoch: int
    """The epoch it started from: the requested one, or a later one saved in the checkpoint."""
    seconds: float
    """Wall time of the loop itself (no evaluation), for RTE and throughput."""
    images: int
    loss: float
    """Mean loss of the last epoch."""
    acc: float
    """Training accuracy of the last epoch, percent."""

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0


@dataclass
class Batch:
    """What a loss sees of one training step, besides the model's output on ``x``."""

    x: torch.Tensor
    """The images of the step (augmented, in [0, 1], in the model's memory layout)."""
    y: torch.Tensor
    """The targets (the labels, or what the pass's ``relabel`` made of them)."""
    forward: Callable[[torch.Tensor], torch.Tensor]
    """The model as the step runs it (compiled, autocast): for a loss that needs a second output."""
    partner: tuple[torch.Tensor, torch.Tensor] | None = None
    """A batch of the pass's ``partner`` set (images, labels), when it has one."""
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    """The parts of a method's loss worth watching (``batch.terms["kl_forget"] = kl``): their epoch means
    join the curves sent to experiment trackers, beside the loss."""


def cross_entropy(out: torch.Tensor, batch: Batch, epoch: int) -> torch.Tensor:
    return F.cross_entropy(out, batch.y)


@dataclass
class Pass:
    """One pass over a dataset inside every epoch of :func:`fit`; an epoch runs its passes in order.

    One pass with the plain loss is ordinary training. Methods that alternate datasets (RL: the
    forget set with random labels, then the retain set; SCRUB: a max-step on the forget set, then a
    min-step on the retain set) give several; NegGrad+ pairs each retain batch with a forget batch.
    """

    data: ImageSet
    loss: LossFn = cross_entropy
    relabel: Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor] | None = None
    """``relabel(x, y, gen)``: the targets to train on (random labels, an adversary's labels);
    random draws come from ``gen``, the epoch's generator, so a resumed run draws the same."""
    partner: ImageSet | None = None
    """A second set whose batches ride along (``Batch.partner``): one shuffled pass per epoch, replayed
    in the same order when it runs out (as ``zip(data, itertools.cycle(partner))``)."""
    batch_size: int | None = None
    """Images per step (default: the config's batch size)."""
    partner_batch_size: int | None = None
    when: Callable[[int], bool] | None = None
    """Whether the pass runs in epoch ``e`` (0-based); default: every epoch."""

    def steps(self, cfg: TrainConfig) -> int:
        n, size = len(self.data), self.batch_size or cfg.batch_size
        return n // size + (n % size > 1) or 1  # `batches` drops a lone last sample

    def runs_in(self, epoch: int) -> bool:
        return self.when is None or self.when(epoch)


def partner_batches(data: ImageSet, size: int, gen: torch.Generator, aug: Augment | None) -> Iterator[tuple]:
    """Batches of ``data`` without end: one shuffled pass, then the same batches again and again."""
    seen = []
    for batch in batches(data, size, shuffle=True, gen=gen, aug=aug):
        seen.append(batch)
        yield batch
    while True:
        yield from seen


def fit(
    model: nn.Module,
    data: ImageSet | list[Pass],
    cfg: TrainConfig,
    *,
    mask: Mask | None = None,
    freeze: Freeze | None = None,
    loss_fn: LossFn = cross_entropy,
    start_epoch: int = 0,
    seed: int = 0,
    aug: Augment | None = None,
    reporter: Reporter | None = None,
    label: str = "train",
    diverge_hint: str = "lower --lr",
    on_epoch_end: Callable[[int, nn.Module], None] | None = None,
    checkpoint: Checkpoint | None = None,
) -> FitResult:
    """Train ``model`` in place from ``start_epoch`` to ``cfg.epochs`` with the config's optimiser (SGD, or
    Adam where it declares one): on ``data`` with ``loss_fn``, or, given a list of :class:`Pass`, on each
    of them in turn every epoch.

    Each epoch's data order, augmentation and relabelling come from a generator seeded by (seed,
    epoch), so a run rewound or resumed at epoch k sees exactly the batches an uninterrupted run
    would. ``mask`` keeps pruned weights at exactly 0; ``freeze`` keeps the weights outside its
    gradient mask bit-identical to their values (SalUn). With a ``checkpoint``, the state is saved
    after every epoch and a matching saved state is resumed from.
    """
    passes = _passes(data, loss_fn, label)
    reporter = reporter or Reporter()
    device = next(model.parameters()).device
    world = distributed.world_size() if distributed.active() else 1
    opt = optimizer(model, cfg)
    aug = aug if cfg.augment else None
    if mask is not None:
        mask.apply(model)
    start_epoch = _resume(checkpoint, model, opt, start_epoch, reporter, label)
    model.train()
    settings = _RUNTIME.get()
    autocast = _autocast(device, settings.amp)
    _warn_if_batchnorm_per_rank(model, world, settings)
    reporter.start(
        label, sum(p.steps(cfg) for e in range(start_epoch, cfg.epochs) for p in passes if p.runs_in(e))
    )
    seconds, images, ran, loss_mean, acc = 0.0, 0, 0, float("nan"), float("nan")
    with contextlib.ExitStack() as stack:
        stack.callback(reporter.stop)
        layout = stack.enter_context(fast_layout(model, device))
        forward = _training_forward(model, world, settings, stack)
        for epoch in range(start_epoch, cfg.epochs):
            gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            active = [p for p in passes if p.runs_in(epoch)]
            steps = sum(p.steps(cfg) for p in active)
            synchronize(device)
            t0 = time.perf_counter()
            tally = _Tally.zeros(device)
            reported = 0
            for i, (p, x, y, part, partner) in enumerate(_rank_steps(active, cfg, gen, aug, layout, world)):
                lr = lr_at(cfg, epoch, i, steps)
                for group in opt.param_groups:
                    group["lr"] = lr
                batch = Batch(x, y, forward, partner)
                with autocast():
                    out = forward(x)
                    loss = p.loss(out, batch, epoch)
                _sgd_step(model, opt, loss, part, mask, freeze)
                tally.add(loss, out, y, part, batch.terms)
                if (i + 1) % 10 == 0 or i + 1 == steps:
                    seen = int(tally.seen)
                    reporter.update(
                        images=world * (seen - reported),
                        advance=i % 10 + 1,
                        epoch=f"{epoch + 1}/{cfg.epochs}",
                        loss=tally.loss_sum.item() / max(tally.seen, 1),
                        acc=100.0 * tally.correct.item() / max(tally.seen, 1),
                        lr=lr,
                        ips=world * tally.seen / max(time.perf_counter() - t0, 1e-9),
                    )
                    reported = seen
            synchronize(device)
            took = time.perf_counter() - t0
            seconds += took
            loss_total, hits, seen, bad = _over_ranks(tally, model, device, world)
            images += int(seen)
            loss_mean, acc = loss_total / max(seen, 1), 100.0 * hits / max(seen, 1)
            if not math.isfinite(loss_mean) or bad:
                raise _diverged(checkpoint, label, epoch, loss_mean, diverge_hint)
            ran += 1
            # Before the checkpoint, so a run killed in between repeats (not loses) the epoch; the trackers'
            # journal then keeps a resumed run from sending it twice.
            curves = {"loss": loss_mean, "acc": acc, "lr": lr, "images_per_second": seen / max(took, 1e-9)}
            loggers.series(label, epoch + 1, curves | tally.term_means())
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, model)
            _save_checkpoint(checkpoint, model, opt, epoch + 1)
    # Ranks other than 0 updated their BatchNorm statistics from their own parts: all go on with rank 0's.
    distributed.broadcast_model(model)
    return FitResult(
        epochs=ran, start_epoch=start_epoch, seconds=seconds, images=images, loss=loss_mean, acc=acc
    )


def _passes(data: ImageSet | list[Pass], loss_fn: LossFn, label: str) -> list[Pass]:
    """What :func:`fit` trains on, as passes. An empty set is refused before any work: an epoch without
    batches would end with a loss of 0 and pass for a finished run."""
    passes = [Pass(data, loss_fn)] if isinstance(data, ImageSet) else list(data)
    if any(len(p.data) == 0 or (p.partner is not None and len(p.partner) == 0) for p in passes):
        raise UsageError(
            f"{label}: there is nothing to train on (0 images)", hint="check the dataset and the forget set"
        )
    return passes


def _resume(
    checkpoint: Checkpoint | None,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    start_epoch: int,
    reporter: Reporter,
    label: str,
) -> int:
    """The epoch to start from: ``start_epoch``, or a later one whose state ``checkpoint`` holds (loaded
    into ``model`` and ``opt``), so a killed run goes on where it stopped. Every rank must read the same
    epoch: ranks training different epochs would stall in each other's collectives."""
    if checkpoint is None:
        return start_epoch
    saved = distributed.same(checkpoint.load(model, opt), f"the epoch of {str(checkpoint.path)!r}")
    if saved > start_epoch:
        reporter.note(f"{label}: resuming from the checkpoint of epoch {saved}")
        return saved
    return start_epoch


def _warn_if_batchnorm_per_rank(model: nn.Module, world: int, settings: Runtime) -> None:
    """Data-parallel training otherwise gives one process's model; BatchNorm on each rank's part does not,
    and the user should learn that before a long run, not from its results."""
    if world > 1 and distributed.has_batchnorm(model) and not settings.sync_bn:
        warnings.warn(
            f"data-parallel on {world} ranks, BatchNorm normalises with each rank's part of the batch, so "
            "the model differs from one process's; --sync-bn (GPUs) or a model without BatchNorm (--arch "
            "cnn_gn) keep the global batch's statistics",
            SmuWarning,
            stacklevel=1,  # this line: shown once however many times a command trains
        )


def _training_forward(
    model: nn.Module, world: int, settings: Runtime, stack: contextlib.ExitStack
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model as training steps run it: behind DDP under torchrun (SyncBatchNorm, if asked, until
    ``stack`` closes) and compiled with --compile. Called once the layout has changed, so DDP's
    gradient buckets match the weights."""
    stepper = model
    if world > 1:
        if settings.sync_bn:
            stack.enter_context(distributed.synced_batchnorm(model))
        stepper = distributed.data_parallel(model)
    return _compiled(stepper) if settings.compile else stepper


class _Step(NamedTuple):
    """One training step as this rank runs it."""

    pass_: Pass
    x: torch.Tensor
    """This rank's images of the batch (all of them in one process), in the model's layout."""
    y: torch.Tensor
    part: distributed.Share | None
    """Which part of the global batch ``x`` is, under torchrun."""
    partner: tuple[torch.Tensor, torch.Tensor] | None


def _rank_steps(
    passes: list[Pass],
    cfg: TrainConfig,
    gen: torch.Generator,
    aug: Augment | None,
    layout: torch.memory_format,
    world: int,
) -> Iterator[_Step]:
    """An epoch's steps, pass after pass. Lazy, so each batch draws from ``gen`` only once the step before
    it has run, and in the order one process draws: the batch, its relabelling, the partner batch."""
    for p in passes:
        size = p.batch_size or cfg.batch_size
        partners = partner_batches(p.partner, p.partner_batch_size or size, gen, aug) if p.partner else None
        for x, y in batches(p.data, size, shuffle=True, gen=gen, aug=aug):
            if p.relabel is not None:
                y = p.relabel(x, y, gen)
            x, y, part = _rank_part(x, y, world)
            x = x.contiguous(memory_format=layout)
            partner = None
            if partners is not None:
                px, py = next(partners)
                partner = (px.contiguous(memory_format=layout), py)  # used whole by every rank
            yield _Step(p, x, y, part, partner)


def _rank_part(
    x: torch.Tensor, y: torch.Tensor, world: int
) -> tuple[torch.Tensor, torch.Tensor, distributed.Share | None]:
    """This rank's part of a global batch (all of it in one process; no share). Every rank draws the
    whole batch, with the same generator calls as one process, and keeps its slice: the ranks' parts
    together are the batch one process would train on, and the generators stay in step."""
    part = distributed.share(len(y)) if world > 1 else None
    if part is not None:
        x, y = x[part.lo : part.hi], y[part.lo : part.hi]
    return x, y, part


def _sgd_step(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    loss: torch.Tensor,
    part: distributed.Share | None,
    mask: Mask | None,
    freeze: Freeze | None,
) -> None:
    """One SGD step that moves no pruned or frozen weight: their gradients are zeroed before it, so
    momentum never builds up there, and they are put back after it, since weight decay acts inside it."""
    opt.zero_grad(set_to_none=True)
    _rank_backward(loss, part)
    if mask is not None:
        mask.mask_grads(model)
    if freeze is not None:
        freeze.mask_grads(model)
    opt.step()
    if mask is not None:
        mask.apply(model)
    if freeze is not None:
        freeze.restore(model, opt)


def _rank_backward(loss: torch.Tensor, part: distributed.Share | None) -> None:
    """Gradients of this rank's loss. DDP averages them over the ranks in backward; weighting each rank's
    mean loss by its share of the batch (``part.scale``) makes that average the global batch's gradient
    when the parts differ in size."""
    (loss if part is None else loss * part.scale).backward()


@dataclass
class _Tally:
    """One epoch's loss and accuracy so far on this rank. The sums stay on the device, so a step does not
    wait for the GPU; only a progress update reads them."""

    loss_sum: torch.Tensor
    correct: torch.Tensor
    seen: int = 0
    terms: dict[str, list] = field(default_factory=dict)
    """name -> [sum of the term times the batch size, images]: a method's own loss terms (``Batch.terms``)."""

    @classmethod
    def zeros(cls, device: torch.device) -> _Tally:
        return cls(torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.long))

    def add(
        self,
        loss: torch.Tensor,
        out: torch.Tensor,
        y: torch.Tensor,
        part: distributed.Share | None,
        terms: dict[str, torch.Tensor] | None = None,
    ) -> None:
        if part is None or part.counts:  # a batch every rank takes whole counts once
            self.loss_sum += loss.detach() * len(y)
            self.correct += (out.detach().argmax(1) == y).sum()
            self.seen += len(y)
            for name, value in (terms or {}).items():
                total = self.terms.setdefault(name, [0.0, 0])
                total[0] = total[0] + value.detach() * len(y)
                total[1] += len(y)

    def term_means(self) -> dict[str, float]:
        """Each loss term's mean over the epoch's images on this rank (rank 0's is what trackers get)."""
        return {name: float(total) / max(n, 1) for name, (total, n) in self.terms.items()}


def _over_ranks(tally: _Tally, model: nn.Module, device: torch.device, world: int) -> list[float]:
    """[loss sum, hits, images, bad] of the epoch over all ranks, ``bad`` when any rank's weights went bad:
    every rank must see the same numbers, to stop or go on together."""
    totals = [tally.loss_sum.item(), tally.correct.item(), tally.seen, float(not params_finite(model))]
    return distributed.sum_values(totals, device) if world > 1 else totals


def _diverged(checkpoint: Checkpoint | None, label: str, epoch: int, loss: float, hint: str) -> DivergedError:
    """The error for a diverged epoch, once the checkpoint is gone: resuming a diverged run would only
    diverge again."""
    if checkpoint is not None:
        checkpoint.clear()
    return DivergedError(
        f"{label} diverged in epoch {epoch + 1}: the loss is {loss}",
        hint=f"{hint}; nothing was written for this step",
    )


def _save_checkpoint(
    checkpoint: Checkpoint | None, model: nn.Module, opt: torch.optim.Optimizer, epoch: int
) -> None:
    """Save the state after ``epoch`` epochs, so a killed run resumes from here bit-for-bit. Called after
    ``on_epoch_end``: a checkpoint past an epoch means that epoch's callback (a rewind point) has run."""
    if checkpoint is not None:
        checkpoint.save(model, opt, epoch)


EVAL_SHARE = 1 / 3
"""The cost of an image in a pass without an update (evaluation, Fisher, saliency), as a share of a
training step's: a forward pass against forward, backward and update (the usual rule of thumb)."""


def calibrate(
    model: nn.Module, input_shape: tuple[int, int, int], batch_size: int, budget_s: float = 0.3
) -> float:
    """Training images per second of ``model`` on its device, from a few SGD steps of a copy of it on
    random images of ``input_shape`` (channels, height, width): what an estimate of a run's time divides by.

    Batches of at most 64 images. The first steps of a process pay one-time costs (kernels chosen,
    buffers allocated: 30x a later step of a small CNN, spread over a few steps), so steps are not
    timed while each is faster than the last (at most 4); then up to 5 timed steps, fewer once
    ``budget_s`` is spent, and the median step gives the speed (a busy machine slows some down). The
    model, its optimiser and every random stream the run draws from are left as they were, so a run's
    bytes do not change."""
    device = next(model.parameters()).device
    probe = copy.deepcopy(model).train()
    opt = torch.optim.SGD(probe.parameters(), lr=1e-3, momentum=0.9)
    autocast = _autocast(device, _RUNTIME.get().amp)
    n = max(2, min(batch_size, 64))
    gen = torch.Generator(device=device).manual_seed(0)
    shape = (n, *input_shape)
    times: list[float] = []
    previous: float | None = None
    with (
        torch.random.fork_rng(devices=[device] if device.type == "cuda" else []),
        fast_layout(probe, device) as layout,
    ):
        for step in range(9):
            x = torch.rand(shape, generator=gen, device=device).contiguous(memory_format=layout)
            synchronize(device)
            t0 = time.perf_counter()
            with autocast():
                out = probe(x)
                loss = F.cross_entropy(out, torch.zeros(n, dtype=torch.long, device=device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            synchronize(device)
            took = time.perf_counter() - t0
            if not times and step < 4 and (previous is None or took < 0.7 * previous):
                previous = took  # still warming up: each step faster than the last
                continue
            times.append(took)
            if sum(times) >= budget_s or len(times) == 5:
                break
    return n / max(sorted(times)[len(times) // 2], 1e-9)


def params_finite(model: nn.Module) -> bool:
    """True when no weight or buffer is NaN or Inf."""
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point())


def eval_batch_size(device: torch.device) -> int:
    """Large batches feed a GPU; on a CPU, small ones stay in cache (resnet20 on 28×28: 64 images per
    batch ran 1.5× faster than 1,024)."""
    return 64 if device.type == "cpu" else 1024


def predict(model: nn.Module, data: ImageSet, batch_size: int | None = None) -> torch.Tensor:
    """Logits for every image, in order, in evaluation mode (no augmentation). Under torchrun each rank
    computes its share of the rows and every rank gets all of them."""
    device = data.device
    batch_size = batch_size or eval_batch_size(device)
    lo, hi = distributed.rows(len(data))
    was_training = model.training
    model.eval()
    try:
        # The layout changes outside inference mode: parameters re-made inside it would become
        # inference tensors, which no later gradient (SSD's, SalUn's) could flow through.
        with fast_layout(model, device) as layout, torch.inference_mode():
            outs = [
                model(to_float(data.take(slice(i, min(i + batch_size, hi)))).contiguous(memory_format=layout))
                for i in range(lo, hi, batch_size)
            ]
    finally:
        model.train(was_training)
    if not outs:
        return torch.empty(0, 0)
    return distributed.gather_rows(torch.cat(outs), len(data))


def accuracy(model: nn.Module, data: ImageSet, batch_size: int | None = None) -> float:
    """Top-1 accuracy in percent (NaN for an empty set)."""
    if len(data) == 0:
        return float("nan")
    return 100.0 * (predict(model, data, batch_size).argmax(1) == data.y).float().mean().item()
