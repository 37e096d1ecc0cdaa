"""`smu audit` as a library: an ensemble of retrained models and one of unlearned models, each member a
cached, resumable step (``smu.execution.steps``), judged example by example (``smu.evaluation.judges``).

An audit folder::

    forget.safetensors                  the forget set every member uses
    reference/seed-K/                   the retrained ensemble, shared by every method audited here
    <method>/seed-K/                    the audited method's ensemble
    <method>/<statistic>-<thresholds>/  the verdict: audit.safetensors (per-example statistics of both
                                        ensembles, ε, bin and score) and audit.json

A member step writes ``stats.safetensors`` (both statistics of every forget example; with extra
``metrics``, its logits on D_f too: :mod:`smu.workflows.audit_metrics`) and keeps its metrics; the
weights are deleted once measured unless ``keep_models``. ``smu run`` plans the same steps for a recipe
of ``kind: audit``.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smu import loggers
from smu.core.errors import ArtifactError, UsageError
from smu.core.options import Checked, flag_of, param
from smu.core.progress import Reporter
from smu.core.text import jsonable
from smu.core.units import reported
from smu.data import Splits
from smu.data.forget import ForgetSet, resolve_forget
from smu.evaluation import unlearning_metrics
from smu.evaluation.judges import BIN_EDGES, SIDES, example_epsilon, forgetting_quality, tow, ulira
from smu.evaluation.metrics import metric_names
from smu.execution import make_executor
from smu.execution.engine import predict, resolve_device
from smu.execution.steps import Plan, Step, is_done, result_of
from smu.io import artifacts, files, tensorfile
from smu.io import schema as S
from smu.io.artifacts import LoadedModel
from smu.io.files import digest
from smu.methods.unlearning import code_identity, folder_name, make_config
from smu.workflows.audit_metrics import KEEPS, check_keep_models, ensemble_metrics, member_keeps, member_keys
from smu.workflows.common import (
    command_line,
    default_out,
    run_folder,
    runs_estimate,
    threads_for,
    tracked,
    write_manifest,
)
from smu.workflows.evaluate import without_metrics
from smu.workflows.subject import Subject, open_subject
from smu.workflows.unlearn import run_unlearn

STATISTICS = {
    "logit": "φ = log(p_y / (1 − p_y)) of the true label (the official metric's and LiRA's; the default: it "
    "sees the label, and it is spread out, not squashed into [0, log C])",
    "loss": "cross-entropy against the model's own prediction (the community notebook's)",
}
METHOD_SEEDS = 1_000_000
"""Unlearned members use seeds from here, the retrained ones from 0: auditing retrain itself compares
two different retrained ensembles."""
REFERENCE = "retrain"
JUDGE_VERSION = 2
"""Part of every verdict's step key: raised whenever the judges change what they compute, so a verdict
an older smu cached is judged again instead of reused (2: float64 end to end, U-LiRA's variances
leave the target out)."""


@dataclass
class AuditConfig(Checked):
    models: int = param(8, ge=3)
    """Models in each ensemble, N (the competition used 512; bench/audit_models.py shows what N buys); at
    least 3, as U-LiRA fits a variance to the models of an ensemble other than the one it holds out."""
    statistic: str = param("logit", choices=tuple(STATISTICS))
    """The per-example statistic F attacks: logit (φ = log(p_y/(1-p_y)), the default) or loss."""
    thresholds: str = param("both", choices=tuple(SIDES))
    """F's single-threshold attacks: both (each threshold tried both ways) or above (the notebook's)."""


def audit(
    model: str | Path,
    forget: str | Path,
    method: str,
    keep_models: bool = False,
    metrics: str | Sequence[str] | None = None,
    metric_seed: int = 0,
    forget_seed: int = 0,
    data: str | Path | None = None,
    device: str = "auto",
    amp: bool = False,
    compile: bool = False,
    sync_bn: bool = False,
    threads: int | None = None,
    out: str | Path | None = None,
    force: bool = False,
    executor: str = "serial",
    address: str | None = None,
    cpus_per_step: float | None = None,
    gpus_per_step: float | None = None,
    dry_run: bool = False,
    log: Sequence[str] = (),
    log_dir: str | Path | None = None,
    tracking_uri: str | None = None,
    wandb_project: str | None = None,
    wandb_entity: str | None = None,
    log_models: bool = False,
    reporter: Reporter | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Audit an unlearning method: per-example attacks between N unlearned and N retrained models.

    ``options`` are the audit's (``models=8``, ``statistic``, ``thresholds``), the method's
    hyper-parameters (``epochs=2``) and, prefixed ``retrain_``, those of the retrained ensemble
    (``retrain_epochs=20``). Returns what ``--json`` prints; with ``dry_run``, only the plan and its time
    estimate. ``log`` names experiment trackers: the audit is one run there, each model a child run.
    ``metrics`` names extra metrics (``"zrf,js"``), each unlearned member against the retrained member of
    its index, under ``result["extra"]``; ``metric_seed`` draws ZRF's random model.
    """
    start = time.perf_counter()
    given = {k: v for k, v in locals().items() if k not in ("options", "reporter", "start")} | options
    given = without_metrics(given) if not metrics else given
    extra = metric_names(metrics)  # checked before anything is loaded or written
    check_keep_models(extra, keep_models)
    tracking = loggers.settings(log, log_dir, tracking_uri, wandb_project, wandb_entity, log_models)
    own = {f.name for f in dataclasses.fields(AuditConfig)}
    audit_cfg = AuditConfig(**{k: v for k, v in options.items() if k in own and v is not None})
    retrain = {k.removeprefix("retrain_"): v for k, v in options.items() if k.startswith("retrain_")}
    mine = {k: v for k, v in options.items() if k not in own and not k.startswith("retrain_")}
    cfg = make_config(method, mine)
    retrain_cfg = make_config(REFERENCE, retrain, where=lambda name: flag_of(f"retrain_{name}"))
    runner = make_executor(executor, address, cpus_per_step, gpus_per_step)
    runner.check()
    dev = resolve_device(device)
    subject = open_subject(model, forget, device=dev, forget_seed=forget_seed, data=data, method=method)
    loaded, fs = subject.loaded, subject.forget
    prefix = {id(retrain_cfg): "retrain"}
    command = command_line(
        "smu audit",
        {k: v for k, v in given.items() if k not in options},
        audit_cfg,
        cfg,
        retrain_cfg,
        prefix=lambda config, name: prefix.get(id(config), ""),
    )
    out = Path(out) if out else default_out("audit", loaded.dataset, loaded.arch)
    check_audit_folder(out, fs, subject.splits, force=force)
    identity = {"parent": loaded.sha256, "forget": fs.sha256}
    configs = {REFERENCE: retrain_cfg, method: cfg}
    planned = plan(lambda: subject, identity, {method: cfg}, retrain_cfg, audit_cfg, out, metrics=extra)
    members = [s for s in planned if s.tags["kind"] == "member" and not is_done(s)]
    runs = [(s.tags["method"], configs[s.tags["method"]]) for s in members]
    what = f"{audit_cfg.models} models each of {method} and {REFERENCE}, {len(runs)} still to train"
    with threads_for(threads or runner.threads):  # timed with the thread count the run will use
        estimate = runs_estimate(runs, subject, what, runner.parallel)
    if dry_run:
        return {"dry_run": True, "method": method, "out": str(out), "estimate": estimate.as_dict()}
    (reporter or Reporter()).plan(estimate)
    runner.start()
    with (
        run_folder(
            out,
            force=True,
            amp=amp,
            compile=compile,
            sync_bn=sync_bn,
            threads=threads or runner.threads,
            reporter=reporter,
        ) as folder,
        tracked(tracking, folder, command, audit_tags(loaded, method, fs), dev) as track,
    ):
        if not (folder / "forget.safetensors").is_file():
            fs.save(folder / "forget.safetensors")
        steps = plan(
            lambda: subject,
            identity,
            {method: cfg},
            retrain_cfg,
            audit_cfg,
            folder,
            keep_models=keep_models,
            reporter=reporter,
            command=command,
            metrics=extra,
            metric_seed=metric_seed,
        )
        again = {  # what a Ray worker plans the same steps from; its subject loads on its own device
            "model": str(model),
            "data": None if data is None else str(data),
            "device": device,
            "identity": identity,
            "methods": {method: cfg},
            "retrain_cfg": retrain_cfg,
            "audit": audit_cfg,
            "out": str(folder),
            "keep_models": keep_models,
            "command": command,
            "metrics": list(extra),
            "metric_seed": metric_seed,
        }
        done = runner.run(steps, Plan(command_plan, again, amp=amp, compile=compile), reporter)
        ran = sum(not skipped for _, _, skipped in done)
        result = done[-1][1] | {
            "estimate": estimate.as_dict(),
            "out": str(folder),
            "wall_s": time.perf_counter() - start,
            "steps": {"total": len(done), "ran": ran, "reused": len(done) - ran},
            "config": dataclasses.asdict(cfg),
            "retrain_config": dataclasses.asdict(retrain_cfg),
        }
        result["manifest"] = write_manifest(steps[-1].folder, command, given, result, dev, track.tags)
        verdict = steps[-1].folder
        sent = sorted(p for p in verdict.iterdir() if p.suffix != ".safetensors")
        track.done(result | epsilon_bins(verdict), verdict, sent)
        if track.run is not None:
            # Drawn as the competition bins it: ε of 6 or more (∞: told apart every time) in the last bin.
            epsilon = tensorfile.read_tensors(verdict / "audit.safetensors")["epsilon"]
            track.run.histogram("epsilon", epsilon.clamp(max=float(BIN_EDGES[-1])).tolist())
    return result


def epsilon_bins(verdict: Path) -> dict[str, Any]:
    """The audit's ε histogram as numbers for experiment trackers: examples per bin of the competition's
    scoring (1: ε = 0 ... 13: ε ≥ 6 or ∞), from the verdict's audit.safetensors (empty without one)."""
    path = verdict / "audit.safetensors"
    if not path.is_file():
        return {}
    bins = tensorfile.read_tensors(path)["bin"].tolist()
    return {"epsilon_bins": {str(b): bins.count(b) for b in range(1, len(BIN_EDGES) + 1)}}


def audit_tags(loaded: LoadedModel, method: str, fs: ForgetSet) -> dict[str, Any]:
    """What a run table filters audits by."""
    sparsity = loaded.mask.percent() if loaded.mask is not None else 0.0
    tags = {"command": "audit", "method": method, "scenario": fs.spec, "dataset": loaded.dataset}
    return tags | {"model": loaded.arch, "sparsity": f"{sparsity:.1f}"}


def example_statistics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Both statistics for every example, in float64: φ = z_y − logsumexp(z_{≠y}) (stable for
    confident models), and the loss of the prediction, logsumexp(z) − max(z)."""
    z = logits.double()
    true = z.gather(1, labels[:, None]).squeeze(1)
    others = z.scatter(1, labels[:, None], float("-inf"))
    return {
        "logit": true - torch.logsumexp(others, dim=1),
        "loss": torch.logsumexp(z, dim=1) - z.max(dim=1).values,
    }


def member_step(
    subject: Callable[[], Subject],
    identity: dict[str, Any],
    method: str,
    cfg: Any,
    seed: int,
    folder: Path,
    *,
    keep_models: bool,
    reporter: Reporter,
    needs: tuple[str, ...] = (),
    command: str = "smu audit",
    keeps: str = KEEPS[0],
) -> Step:
    """One member of an ensemble: ``method`` with ``seed`` on the original model, measured.

    ``identity`` names the original model and forget set in the step's key (their hashes for the
    command, the producing steps' keys in a recipe, where the model does not exist yet, and which the
    member then ``needs``). ``keeps``: what it keeps for extra metrics (:data:`KEEPS`)."""
    code = code_identity(method)  # a user's function: its file's sha256, so a changed file runs again
    decides = {"member": method, "config": dataclasses.asdict(cfg), "seed": seed, **identity, **code}
    key = member_keys(decides, folder, keeps)

    def run() -> dict[str, Any]:
        s = subject()
        model = s.loaded.model
        original = {k: v.clone() for k, v in model.state_dict().items()}  # methods change it in place
        try:
            result = run_unlearn(
                s.loaded,
                s.splits,
                s.forget,
                method,
                cfg,
                out=folder,
                seed=seed,
                reporter=reporter,
                evaluate=False,
                command=command,
                resume=True,
            )
        finally:
            model.load_state_dict(original)
        member = artifacts.load_model(result["model"], next(model.parameters()).device).model
        forget = s.forget.forget(s.splits)
        logits = predict(member, forget)
        stats = example_statistics(logits, forget.y)
        if keeps != KEEPS[0]:  # what the extra metrics read, as smu eval computes it
            stats["logits"] = logits.float()
        meta = {S.KIND: S.MEMBER_STATS, S.FORGET_SHA256: s.forget.sha256, S.SEED: seed}
        tensorfile.save_tensors(folder / "stats.safetensors", stats, meta)
        metrics = unlearning_metrics(member, s.splits, s.forget)
        if not keep_models and keeps != "weights":
            for name in ("model.safetensors", "mask.safetensors", "forget.safetensors"):
                (folder / name).unlink(missing_ok=True)
        return {"seed": seed, "rte_s": result["rte_s"], "metrics": metrics}

    tags = {"kind": "member", "method": method, "seed": seed}
    return Step(f"{method} member, seed {seed}", folder, key, run, tags, needs)


def verdict_step(
    subject: Callable[[], Subject],
    references: list[Step],
    members: list[Step],
    method: str,
    audit: AuditConfig,
    folder: Path,
    tags: dict[str, Any],
    metrics: Sequence[str] = (),
    metric_seed: int = 0,
) -> Step:
    """Judge the ensembles once both are done: the result :func:`judge` gives, and the artifact; with
    ``metrics``, the extra metrics of the member pairs under ``extra``."""
    asked = {"metrics": list(metrics), "metric_seed": metric_seed} if metrics else {}
    key = digest(
        {
            "verdict": [s.key for s in references + members],
            "judge": JUDGE_VERSION,
            **dataclasses.asdict(audit),
            **asked,
        }
    )

    def run() -> dict[str, Any]:
        s = subject()
        retrained = [member_result(step) for step in references]
        unlearned = [member_result(step) for step in members]
        verdict = judge(retrained, unlearned, s.splits, s.forget, audit)
        arrays = verdict.pop("arrays")
        meta = {k: v for k, v in s.loaded.meta.items() if k in (*S.MODEL_IDENTITY, *S.SPLIT)} | {
            S.KIND: S.AUDIT,
            S.PARENT: s.loaded.sha256,
            S.FORGET_SHA256: s.forget.sha256,
            S.AUDIT_METHOD: method,
            S.AUDIT_STATISTIC: audit.statistic,
            S.AUDIT_SIDES: audit.thresholds,
            S.AUDIT_MODELS: audit.models,
        }
        artifact = folder / "audit.safetensors"
        tensorfile.save_tensors(artifact, arrays, meta)
        result = jsonable(
            {
                "method": method,
                **dataclasses.asdict(audit),
                "forget": s.forget.summary(),
                **verdict,
                "rte_s": float(np.mean([r["rte_s"] for r in unlearned])),
                "artifact": str(artifact),
            }
        )
        if metrics:  # only when asked: the verdict of a plain audit stays as it was
            result["extra"] = jsonable(ensemble_metrics(metrics, retrained, unlearned, s, metric_seed))
        files.write_json(folder / "audit.json", reported(result))
        return result

    needs = tuple(s.key for s in references + members)
    return Step(f"judge {method}", folder, key, run, {"kind": "audit", "method": method, **tags}, needs)


def member_result(step: Step) -> dict[str, Any]:
    """A finished member's result, with where its statistics are."""
    return result_of(step) | {"stats": step.folder / "stats.safetensors"}


def plan(
    subject: Callable[[], Subject],
    identity: dict[str, Any],
    methods: dict[str, Any],
    retrain_cfg: Any,
    audit: AuditConfig,
    out: Path,
    *,
    keep_models: bool = False,
    reporter: Reporter | None = None,
    tags: dict[str, Any] | None = None,
    needs: tuple[str, ...] = (),
    command: str = "smu audit",
    metrics: Sequence[str] = (),
    metric_seed: int = 0,
) -> list[Step]:
    """The retrained ensemble, then per method (name -> config) its ensemble and its verdict; every
    member ``needs`` the steps that make the subject (in a recipe, the models step) and stores
    ``command`` (the audit's or the recipe's) in its artifacts. With extra ``metrics`` (registered
    names), members keep what those read and verdicts measure them, ZRF's random model drawn from
    ``metric_seed``."""
    reporter = reporter or Reporter()
    keeps = member_keeps(metrics)

    def ensemble(method: str, cfg: Any, first_seed: int, folder: Path) -> list[Step]:
        return [
            member_step(
                subject,
                identity,
                method,
                cfg,
                first_seed + k,
                folder / f"seed-{k}",
                keep_models=keep_models,
                reporter=reporter,
                needs=needs,
                command=command,
                keeps=keeps,
            )
            for k in range(audit.models)
        ]

    references = ensemble(REFERENCE, retrain_cfg, 0, out / "reference")
    steps = list(references)
    for method, cfg in methods.items():
        members = ensemble(method, cfg, METHOD_SEEDS, out / folder_name(method))
        verdict = out / folder_name(method) / f"{audit.statistic}-{audit.thresholds}"
        judged = verdict_step(
            subject, references, members, method, audit, verdict, tags or {}, metrics, metric_seed
        )
        steps += [*members, judged]
    return steps


def command_plan(
    model: str,
    data: str | None,
    device: str,
    identity: dict[str, Any],
    methods: dict[str, Any],
    retrain_cfg: Any,
    audit: AuditConfig,
    out: str,
    keep_models: bool,
    command: str = "smu audit",
    metrics: Sequence[str] = (),
    metric_seed: int = 0,
) -> list[Step]:
    """The steps of ``smu audit`` from plain data (a :class:`smu.execution.steps.Plan`'s ``build``, for a Ray
    worker): the subject is loaded when the first step needs it, on the worker's device, with the
    forget set the command saved in ``out``."""

    @functools.cache
    def subject() -> Subject:
        forget = Path(out) / "forget.safetensors"
        return open_subject(model, forget, device=resolve_device(device), data=data)

    return plan(
        subject,
        identity,
        methods,
        retrain_cfg,
        audit,
        Path(out),
        keep_models=keep_models,
        command=command,
        metrics=metrics,
        metric_seed=metric_seed,
    )


def statistics_of(results: list[dict[str, Any]], statistic: str) -> np.ndarray:
    """(members, examples) array of one statistic, read from the members' stats files."""
    arrays = [member_statistic(Path(r["stats"]), statistic) for r in results]
    if len({len(a) for a in arrays}) > 1:
        raise ArtifactError(f"the members' {statistic} files disagree in length", hint="run the audit again")
    return np.stack(arrays)


def member_statistic(path: Path, statistic: str) -> np.ndarray:
    """One statistic of a member-stats file, checked (a run folder may come from someone else), in
    float64: the precision members compute it in, so the judges see what the members saw."""
    tensorfile.expect_kind(path, tensorfile.read_metadata(path), S.MEMBER_STATS)
    values = tensorfile.read_tensors(path).get(statistic)
    if values is None or values.ndim != 1 or not values.is_floating_point():
        raise ArtifactError(f"{str(path)!r} holds no {statistic} per example", hint="run the audit again")
    return values.double().numpy()


def judge(
    references: list[dict[str, Any]],
    members: list[dict[str, Any]],
    splits: Splits,
    forget: ForgetSet,
    audit: AuditConfig,
) -> dict[str, Any]:
    """F and the final score, U-LiRA, ToW and the ensembles' mean metrics; and the per-example arrays,
    everything that F (the chosen statistic) and U-LiRA (always φ) judged, in float64."""
    stat_u, stat_r = statistics_of(members, audit.statistic), statistics_of(references, audit.statistic)
    phi_u, phi_r = statistics_of(members, "logit"), statistics_of(references, "logit")
    epsilons = np.array(
        [example_epsilon(stat_u[:, s], stat_r[:, s], audit.thresholds) for s in range(stat_u.shape[1])]
    )
    quality, bins, scores = forgetting_quality(epsilons)

    def mean(results: list[dict[str, Any]], key: str) -> float:
        return float(np.mean([r["metrics"][key] for r in results]))

    ratios = (mean(members, "ra") / mean(references, "ra")) * (mean(members, "ta") / mean(references, "ta"))
    attack = ulira(phi_u, phi_r)

    def accuracies(results: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        keys = {"forget": "forget_acc", "retain": "ra", "test": "ta"}
        return {split: np.array([r["metrics"][k] / 100 for r in results]) for split, k in keys.items()}

    labels = forget.forget(splits).y.cpu().numpy()
    worst = [
        {"index": int(forget.indices[i]), "class": splits.info.classes[labels[i]], "epsilon": epsilons[i]}
        for i in np.argsort(-epsilons, kind="stable")[:10]
    ]
    columns = ("ua", "mia_efficacy", "ra", "ta")
    return {
        "forgetting_quality": quality,
        "score": quality * ratios,
        "separated": int(np.isinf(epsilons).sum()),
        # A method without randomness (``none``) gives N copies of one model. No threshold splits a
        # single value, so inside the retrained spread every attack is discarded and ε = 0: F calls
        # such an example forgotten. U-LiRA, which pools each ensemble's variance over the examples, is
        # not fooled.
        "constant": int((np.ptp(stat_u, axis=0) == 0).sum()),
        "ulira": dataclasses.asdict(attack),
        "tow": dataclasses.asdict(tow(accuracies(members), accuracies(references))),
        "unlearned": {k: mean(members, k) for k in columns},
        "retrained": {k: mean(references, k) for k in columns},
        "worst": worst,
        "arrays": {
            "indices": forget.indices.cpu(),
            "epsilon": torch.from_numpy(epsilons),
            "bin": torch.from_numpy(bins.astype(np.int64)),
            "score": torch.from_numpy(scores),
            "statistic_unlearned": torch.from_numpy(stat_u),
            "statistic_retrained": torch.from_numpy(stat_r),
            "phi_unlearned": torch.from_numpy(phi_u),
            "phi_retrained": torch.from_numpy(phi_r),
        },
    }


def check_audit_folder(out: Path, fs: ForgetSet, splits: Splits, *, force: bool) -> None:
    """An audit folder holds the ensembles of one forget set: the one an earlier audit saved there must
    be ``fs``; a folder that holds something else is used only with ``force``."""
    saved = out / "forget.safetensors"
    if saved.is_file():
        earlier = resolve_forget(str(saved), splits)
        if earlier.sha256 != fs.sha256:
            raise UsageError(
                f"--out {str(out)!r} holds the audit of another forget set ({earlier.spec!r})",
                hint="audit this forget set into another --out folder",
            )
    elif out.is_dir() and any(out.iterdir()) and not force:
        raise UsageError(
            f"--out {str(out)!r} is not empty and holds no audit",
            hint="choose another --out, or pass --force",
        )
