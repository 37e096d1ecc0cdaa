"""Fuzzing every reader of what other people hand smu, with Hypothesis.

Files and strings come from others: model, mask, forget-set, saliency and audit files, recipes and their
``key=value`` overrides, ``--forget`` specs and index lists, research checkpoints. Whatever they hold, a
reader either reads them or refuses them with a :class:`smu.core.errors.SmuError` whose message is one line of
at most 500 characters: never another exception, never more than a few seconds or a few hundred MB for
one input, and nothing written. Through the CLI the same input ends with exit code 0, or 1 or 2 and one
``Error:`` line on stderr, and leaves nothing behind: no --out folder, no file beside the input.

Each example starts from a valid file (made once per module) and damages it; what Hypothesis prints for
a failure is the damage, e.g. ``Damage(base='model', how='tensors', ops=(('meta', 'smu.mask', '../x'),))``,
not the bytes. Profiles (tests/conftest.py): ``ci``, the default, the same examples on every run and
about a minute for this file; ``pytest tests/fuzz/test_fuzz.py --hypothesis-profile nightly`` searches far
longer, with new examples each run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import json
import math
import os
import pickle
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import yaml
from harness import (
    HEADROOM,
    MESSAGE,
    SECONDS,
    TORCH_DTYPES,
    Held,
    Long,
    Named,
    Sparse,
    check_cli,
    cli,
    damage,
    edited,
    examples,
    folder_with,
    index,
    listing,
    long_text,
    made_up,
    no_downloads,
    nothing_new_here,
    outcome,
    small_shape,
    sparse,
    special,
    tensor_name,
    unchanged,
    write_damaged,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st

from smu.core.errors import SmuError
from smu.data import splits_of
from smu.io import artifacts, tensorfile
from smu.io import schema as S


@pytest.fixture(scope="module")
def valid(pruned_cnn: Path, digits: Any, tmp_path_factory: Any) -> dict[str, bytes]:
    """The bytes of a valid file of every kind smu reads back: a sparse model and its mask, a dense
    model, forget sets (random and class-wise), a SalUn saliency mask, a member's statistics and an
    audit verdict."""
    from smu.data.forget import resolve_forget
    from smu.execution.engine import predict
    from smu.methods.unlearning.base import Context
    from smu.methods.unlearning.salun import save_saliency
    from smu.workflows.audit import example_statistics

    folder = tmp_path_factory.mktemp("fuzz-valid")
    loaded = artifacts.load_model(pruned_cnn / "round-1" / "model.safetensors")
    fs = resolve_forget("random:10", digits)
    fs.save(folder / "forget.safetensors")
    resolve_forget("class:1", digits).save(folder / "forget-class.safetensors")
    ctx = Context(arch=loaded.arch, model_meta=loaded.meta, model_sha256=loaded.sha256)
    gen = torch.Generator().manual_seed(0)
    keep = {n: torch.rand(p.shape, generator=gen) < 0.5 for n, p in loaded.model.named_parameters()}
    save_saliency(folder / "saliency.safetensors", keep, 0.5, ctx, SimpleNamespace(forget_set=fs))
    forget = fs.forget(digits)
    stats = example_statistics(predict(loaded.model, forget), forget.y)
    meta: dict[str, Any] = {S.KIND: S.MEMBER_STATS, S.FORGET_SHA256: fs.sha256, S.SEED: 0}
    tensorfile.save_tensors(folder / "member-stats.safetensors", stats, meta)
    n = len(fs)
    epsilon = torch.linspace(0, 7, n, dtype=torch.float64)
    epsilon[-1] = math.inf  # a verdict: the ensembles told this example apart perfectly
    bins = torch.arange(n) % 13 + 1
    arrays = {
        "indices": fs.indices,
        "epsilon": epsilon,
        "bin": bins,
        "score": 2.0 / 2.0 ** bins.double(),
        "statistic_unlearned": torch.randn(4, n, generator=gen, dtype=torch.float64),
        "statistic_retrained": torch.randn(4, n, generator=gen, dtype=torch.float64),
    }
    meta = {k: v for k, v in loaded.meta.items() if k in (*S.MODEL_IDENTITY, *S.SPLIT)} | {
        S.KIND: S.AUDIT,
        S.PARENT: loaded.sha256,
        S.FORGET_SHA256: fs.sha256,
        S.AUDIT_METHOD: "ft",
        S.AUDIT_STATISTIC: "logit",
        S.AUDIT_SIDES: "both",
        S.AUDIT_MODELS: 4,
    }
    tensorfile.save_tensors(folder / "audit.safetensors", arrays, meta)
    files = {
        "model": pruned_cnn / "round-1" / "model.safetensors",
        "mask": pruned_cnn / "round-1" / "mask.safetensors",
        "dense": pruned_cnn / "dense" / "model.safetensors",
        "forget": folder / "forget.safetensors",
        "forget-class": folder / "forget-class.safetensors",
        "saliency": folder / "saliency.safetensors",
        "member-stats": folder / "member-stats.safetensors",
        "audit": folder / "audit.safetensors",
    }
    return Held({name: path.read_bytes() for name, path in files.items()})


@pytest.fixture(scope="module")
def subject(valid: dict[str, bytes], tmp_path_factory: Any) -> Held:
    """The valid sparse model, loaded: what masks and saliency files are checked against."""
    from smu.methods.unlearning.base import Context

    folder = tmp_path_factory.mktemp("fuzz-subject")
    (folder / "mask.safetensors").write_bytes(valid["mask"])
    (folder / "model.safetensors").write_bytes(valid["model"])
    loaded = artifacts.load_model(folder / "model.safetensors")
    ctx = Context(arch=loaded.arch, model_meta=loaded.meta, model_sha256=loaded.sha256)
    return Held(loaded=loaded, model=loaded.model, meta=loaded.meta, ctx=ctx)


@pytest.fixture(scope="module")
def splits(digits: Any) -> Any:
    """The digits splits, shown by name: Hypothesis writes out a failing test's arguments."""
    quiet = type("Digits", (type(digits),), {"__repr__": lambda self: "<digits splits>"})
    return quiet(**{f.name: getattr(digits, f.name) for f in dataclasses.fields(digits)})


ALL_BASES = ("model", "mask", "dense", "forget", "forget-class", "saliency", "member-stats", "audit")


def test_the_valid_files_are_read(valid, subject, digits, tmp_path):
    """The starting points themselves: every reader takes its valid file (else the fuzzing below
    would only ever test refusals)."""
    from smu.data.forget import load_forget
    from smu.io.inspection import inspect_artifact
    from smu.methods.unlearning.salun import load_saliency
    from smu.workflows.audit import statistics_of

    for name, data in valid.items():
        (tmp_path / f"{name}.safetensors").write_bytes(data)
    for name in ALL_BASES:
        assert inspect_artifact(tmp_path / f"{name}.safetensors")["intact"], name
    artifacts.load_mask(tmp_path / "mask.safetensors", subject.model, subject.meta)
    assert len(load_forget(tmp_path / "forget.safetensors", digits)) == 10
    assert load_forget(tmp_path / "forget-class.safetensors", digits).forget_class == 1
    assert load_saliency(str(tmp_path / "saliency.safetensors"), subject.model, subject.ctx)[1] == 0.5
    stats = [{"stats": tmp_path / "member-stats.safetensors"}] * 2
    assert statistics_of(stats, "logit").shape == (2, 10)
    assert len(epsilon_histograms(tmp_path / "audit.safetensors", tmp_path / "run")) == 1


# ── safetensors artifacts, library level ───────────────────────────────────────────────────────────


@pytest.mark.slow
@settings(max_examples=examples(1.0))
@given(damage(*ALL_BASES))
def test_any_damaged_artifact_is_read_or_refused(valid, damaged):
    """read_metadata and read_tensors, on every kind of file."""
    with folder_with(write_damaged(damaged, valid, "x.safetensors")) as (path, root), unchanged(root):
        outcome(lambda: tensorfile.read_metadata(path))
        outcome(lambda: tensorfile.read_tensors(path))


@pytest.mark.slow
@settings(max_examples=examples(1.0))
@given(sparse)
def test_a_damaged_model_or_mask_beside_it_is_loaded_or_refused(valid, case):
    """load_model with the mask its header names; a model that loads gives its dataset's splits (what
    every command does next), without downloading anything."""
    with folder_with(lambda f: case.write(f, valid)) as (path, root), unchanged(root):
        loaded = outcome(lambda: artifacts.load_model(path))
        if not isinstance(loaded, SmuError):
            with no_downloads():
                outcome(lambda: splits_of(loaded))


@settings(max_examples=examples(1.0))
@given(damage("mask", "mask", "saliency", "model"))
def test_a_damaged_mask_is_loaded_or_refused(valid, subject, damaged):
    """load_mask(path, model, meta), as ``--mask`` does."""
    with folder_with(write_damaged(damaged, valid, "mask.safetensors")) as (path, root), unchanged(root):
        outcome(lambda: artifacts.load_mask(path, subject.model, subject.meta))
        outcome(lambda: artifacts.load_model(root / "in" / "mask.safetensors"))  # a mask given as --model


@settings(max_examples=examples(1.0))
@given(damage("forget", "forget-class"))
def test_a_damaged_forget_set_is_loaded_or_refused_and_what_loads_can_be_used(valid, splits, damaged):
    """load_forget and resolve_forget(path); a forget set that loads must select training samples:
    its indices are what every unlearning step and metric indexes the training split with."""
    from smu.data.forget import load_forget, resolve_forget

    with folder_with(write_damaged(damaged, valid, "forget.safetensors")) as (path, root), unchanged(root):
        fs = outcome(lambda: load_forget(path, splits))
        outcome(lambda: resolve_forget(str(path), splits))
        if not isinstance(fs, SmuError):
            outcome(lambda: (fs.forget(splits), fs.retain(splits), fs.without_class(splits.test)))


@settings(max_examples=examples(0.6))
@given(damage("saliency", "saliency", "mask"))
def test_a_damaged_saliency_mask_is_loaded_or_refused(valid, subject, damaged):
    """SalUn's ``--saliency PATH``: load_saliency(path, model, ctx)."""
    from smu.methods.unlearning.salun import load_saliency

    with folder_with(write_damaged(damaged, valid, "saliency.safetensors")) as (path, root), unchanged(root):
        outcome(lambda: load_saliency(str(path), subject.model, subject.ctx))


def epsilon_histograms(path: Path, run: Path) -> list[dict[str, Any]]:
    """What ``smu plot`` reads of an audit verdict: its ε, through the audit figures of a run folder
    that holds ``path`` as method ft's verdict."""
    import shutil

    from smu.workflows import plot as plotting

    table = {"scenario": "class:1", "groups": ["dense"], "rows": [{"method": "retrain"}, {"method": "ft"}]}
    verdict = run / "seed-0" / plotting.slug("class:1") / "dense" / "ft" / "logit-both"
    verdict.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, verdict / "audit.safetensors")
    return plotting.epsilon_figures(table, run, {"audit": {}, "seeds": [0]})


@settings(max_examples=examples(0.6))
@given(damage("member-stats", "audit"))
def test_damaged_audit_artifacts_are_read_or_refused(valid, damaged):
    """A member's stats.safetensors as the verdict reads it (beside a valid member's), and an
    audit.safetensors as smu plot reads it."""
    from smu.workflows.audit import statistics_of

    with tempfile.TemporaryDirectory(prefix="smu-fuzz-") as tmp:
        root = Path(tmp)
        (root / "good.safetensors").write_bytes(valid["member-stats"])
        path = root / "stats.safetensors"
        path.write_bytes(damaged.apply(valid))
        with unchanged(root):
            for statistic in ("logit", "loss"):
                outcome(
                    lambda s=statistic: statistics_of(
                        [{"stats": root / "good.safetensors"}, {"stats": path}], s
                    )
                )
        outcome(lambda: epsilon_histograms(path, root / "run"))


@settings(max_examples=examples(1.0))
@given(st.one_of(sparse, damage(*ALL_BASES)))
def test_inspect_reports_any_damaged_artifact(valid, case):
    """smu inspect's library call reads anything smu might have written, reporting what is wrong: a dict,
    or a refusal of a file that is no smu file at all."""
    from smu.io.inspection import inspect_artifact

    def write(folder: Path) -> Path:
        if isinstance(case, Sparse):
            return case.write(folder, valid)
        (folder / "mask.safetensors").write_bytes(valid["mask"])  # found when the header names it
        return write_damaged(case, valid, "x.safetensors")(folder)

    with folder_with(write) as (path, root), unchanged(root):
        report = outcome(lambda: inspect_artifact(path))
        if not isinstance(report, SmuError):
            assert isinstance(report, dict) and {"intact", "problems", "metadata"} <= set(report), report
            json.dumps(report, default=str)


# ── safetensors artifacts through the CLI ────────────────────────────────────────────────────────────


@settings(max_examples=examples(0.25))
@given(st.one_of(sparse, damage(*ALL_BASES)))
def test_smu_inspect_of_any_damaged_artifact(valid, case):
    def write(folder: Path) -> Path:
        if isinstance(case, Sparse):
            return case.write(folder, valid)
        return write_damaged(case, valid, "x.safetensors")(folder)

    with folder_with(write) as (path, root), unchanged(root), nothing_new_here():
        check_cli(*cli(["inspect", path, "--json"]), not_intact_ok=True, as_json=True)


@settings(max_examples=examples(0.25))
@given(sparse)
def test_smu_eval_of_any_damaged_model(valid, case):
    with folder_with(lambda f: case.write(f, valid)) as (path, root), unchanged(root), nothing_new_here():
        check_cli(*cli(["eval", "--model", path, "--forget", "class:1", "--json"]), as_json=True)


@settings(max_examples=examples(0.2))
@given(damage("forget", "forget-class"))
def test_smu_eval_with_any_damaged_forget_set(valid, pruned_cnn, damaged):
    model = pruned_cnn / "round-1" / "model.safetensors"
    written = folder_with(write_damaged(damaged, valid, "forget.safetensors"))
    with written as (path, root), unchanged(root, model.parent), nothing_new_here():
        check_cli(*cli(["eval", "--model", model, "--forget", path, "--json"]), as_json=True)


# ── Forget specs and index files ─────────────────────────────────────────────────────────────────────

# fmt: off
COUNTS = ["0", "1", "10", "-1", "1437", "1438", "99999999999999999999", "1e3", "10%", "100%", "0%", "0.01%",
          "200%", "-5%", "nan%", "inf%", "-inf%", "1e400%", "1e308%", "%", "", " 5", "5 ", "²", "١٠", "0x10",
          "1_0", "+3", "10%%", "3:4", "9" * 5000]
# fmt: on
spec = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda kind, sep, rest: kind + sep + rest,
        st.sampled_from(["class", "random", "indices", "poison", "Class", " class", "class ", "random "]),
        st.sampled_from([":", ":", "", "::", ": "]),
        st.one_of(
            st.sampled_from(COUNTS),
            st.text(max_size=12),
            st.integers().map(str),
            st.floats().map(repr),
            st.floats().map(lambda f: f"{f}%"),
            st.builds(
                lambda c, n: f"{c}:{n}",
                st.sampled_from(["1", "0", "9", "10", "-1", "zero", "x"]),
                st.sampled_from(COUNTS),
            ),
            long_text,
        ),
    ),
)
seed = st.one_of(
    st.just(0), st.integers(-(2**63), 2**64 - 1), st.sampled_from([-1, 2**64, -(2**63) - 1, 2**100])
)


@settings(max_examples=examples(1.0))
@given(spec, seed)
def test_any_forget_spec_is_resolved_or_refused(splits, text, forget_seed):
    """resolve_forget(spec, splits, seed): ``--forget`` and ``--forget-seed`` (or a recipe's scenarios and
    forget_seed); what resolves selects training samples."""
    from smu.data.forget import resolve_forget

    with tempfile.TemporaryDirectory(prefix="smu-fuzz-") as tmp, unchanged(Path(tmp)), nothing_new_here():
        fs = outcome(lambda: resolve_forget(str(text), splits, forget_seed))
        if not isinstance(fs, SmuError):
            outcome(lambda: (fs.forget(splits), fs.retain(splits)))


# fmt: off
JSON_TEXTS = [
    "[" * 100_000, "[" * 100_000 + "]" * 100_000, "[1, 2", "[1e400]", "[" + "9" * 5000 + "]", "[NaN]",
    "[Infinity]", "[-1]", "[1.0]", "[true]", "[[1]]", '["1"]', '["²"]', "[1] [2]", "[]", " [3]", "[3]\n# x",
]
LINE_TEXTS = [
    "{}", "1\n1", "²", "١", "٣\n4", "9" * 5000, "0x10", "1_000", "+3", "-0", "3 # c", "#", "3.0", "1e3",
    "\ufeff3", "3\r\n4", "\x00", "1\x002",
]
# fmt: on
index_file = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(JSON_TEXTS + LINE_TEXTS).map(str.encode),
    st.lists(
        st.one_of(st.integers(-5, 2000).map(str), st.sampled_from(LINE_TEXTS), st.text(max_size=6)),
        max_size=20,
    ).map(lambda lines: "\n".join(lines).encode()),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=5),
        max_leaves=20,
    ).map(lambda v: json.dumps(v if isinstance(v, list) else [v]).encode()),
    st.builds(
        lambda text, enc: text.encode(enc),
        st.sampled_from(["1\n2\n", "[1, 2]", "é\n"]),
        st.sampled_from(["utf-16", "latin-1", "utf-32"]),
    ),
)


@settings(max_examples=examples(1.0))
@given(index_file)
def test_any_indices_file_is_read_or_refused(splits, data):
    """``--forget indices:FILE`` with anything in FILE."""
    from smu.data.forget import resolve_forget

    def write(folder: Path) -> Path:
        (folder / "idx.txt").write_bytes(data)
        return folder / "idx.txt"

    with folder_with(write) as (path, root), unchanged(root):
        fs = outcome(lambda: resolve_forget(f"indices:{path}", splits))
        if not isinstance(fs, SmuError):
            outcome(lambda: (fs.forget(splits), fs.retain(splits)))


# ── Recipes ─────────────────────────────────────────────────────────────────────────────────────────


def recipe_words() -> tuple[list[str], list[str]]:
    """(top-level keys, every key) of a recipe: its sections' fields, the method names and options."""
    from smu.methods.pruning import METHODS as PRUNING
    from smu.methods.unlearning import METHODS
    from smu.workflows.recipes.config import Recipe

    top = [f.name for f in dataclasses.fields(Recipe)]
    words = set(top)

    def walk(obj: Any) -> None:
        for f in dataclasses.fields(obj):
            words.add(f.name)
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value)

    walk(Recipe())
    for registry in (METHODS, PRUNING):
        for name in registry:
            words.add(name)
            config = registry[name].config
            if config is not None and dataclasses.is_dataclass(config):
                words.update(f.name for f in dataclasses.fields(config))
    words |= {w.replace("_", "-") for w in words}
    return top, sorted(words)


TOP_KEYS, RECIPE_KEYS = recipe_words()
# fmt: off
SCALARS = [
    "class:3", "random:10%", "indices:/etc/passwd", "poison:x", "omp", "imp", "synflow", "random", "ft",
    "retrain", "ga", "salun", "none", "cnn", "digits", "cpu", "cuda", "cuda:99", "mps", "auto", "conv", "all",
    "unlearn", "audit", "backdoor", "logit", "both", "1e-300", "5e-4", "nan", ".inf", "-.inf",
    "lr=1e-5:1e-1:log", "lr=1:0", "x=1:2", "15,25", 1e-300, 1e-9, 0.9999999999999999, 2**64, 2**63, -1, 0, 1,
    0.5, math.nan, math.inf,
]
# fmt: on
scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-3, 100),
    st.floats(),
    st.text(max_size=15),
    st.sampled_from(SCALARS),
    st.sampled_from(SCALARS),
)
word = st.one_of(st.sampled_from(RECIPE_KEYS), st.sampled_from(RECIPE_KEYS), st.text(max_size=8))
yaml_value = st.recursive(
    scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(word, inner, max_size=4),
    max_leaves=12,
)
document = st.dictionaries(st.sampled_from(TOP_KEYS) | word, yaml_value, max_size=6)


def dump(value: Any, flow: bool = False) -> str:
    return yaml.safe_dump(value, default_flow_style=flow, allow_unicode=True, sort_keys=False)


def alias_bomb(levels: int, shape: str = "list", key: str = "seeds", width: int = 10) -> str:
    """``levels`` anchors, each ``width`` aliases of the one before: width**levels values in a few hundred
    bytes, under ``key`` (a dotted key nests it in sections)."""
    lines = []
    for i in range(levels):
        items = ["1"] * width if i == 0 else [f"*l{i - 1}"] * width
        if shape == "list":
            lines.append(f"l{i}: &l{i} [{', '.join(items)}]")
        else:
            lines.append(f"l{i}: &l{i} {{{', '.join(f'k{j}: {item}' for j, item in enumerate(items))}}}")
    *sections, last = key.split(".")
    value = f"*l{levels - 1}"
    for section in reversed([*sections, last][1:]):
        value = f"{{{section}: {value}}}"
    return "\n".join(lines) + f"\n{key.split('.')[0]}: {value}\n"


def flow_bomb(levels: int, width: int = 10) -> str:
    """One flow value holding the whole bomb: what an override's value can be."""
    items = [f"&l0 [{', '.join(['1'] * width)}]"]
    items += [f"&l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "[" + ", ".join(items) + "]"


def deep(n: int, open_: str = "[", close: str = "]") -> str:
    return open_ * n + close * n


SMALL_BOMB = 5
"""Levels of ten of the bombs tried in this process (10**5 values: a bad reader stays within the bounds);
the full-size bomb runs in a subprocess (test_an_alias_bomb_stays_small)."""
SPECIAL_RECIPES = [
    Named(alias_bomb(SMALL_BOMB), "list bomb in seeds"),
    Named(alias_bomb(SMALL_BOMB, key="scenarios"), "list bomb in scenarios"),
    Named(alias_bomb(SMALL_BOMB, key="description"), "list bomb in description"),
    Named(alias_bomb(SMALL_BOMB, key="prune.rates"), "list bomb in prune.rates"),
    Named(alias_bomb(SMALL_BOMB, key="report.mia_features"), "list bomb in report.mia_features"),
    Named(alias_bomb(SMALL_BOMB, key="tune.space.ft"), "list bomb in tune.space.ft"),
    Named(alias_bomb(SMALL_BOMB, "map", key="unlearn"), "mapping bomb in unlearn"),
    Named(alias_bomb(SMALL_BOMB, "map", key="unlearn.ft"), "mapping bomb in unlearn.ft"),
    Named(alias_bomb(SMALL_BOMB, "map", key="train"), "mapping bomb in train"),
    Named(alias_bomb(SMALL_BOMB, "map", key="prune.options"), "mapping bomb in prune.options"),
    Named(alias_bomb(SMALL_BOMB, "map", key="tune.space"), "mapping bomb in tune.space"),
    Named(alias_bomb(SMALL_BOMB, "map", key="seeds"), "mapping bomb in seeds"),
    Named("seeds: &a [*a]\n", "a list that holds itself"),
    Named("unlearn: &u {ft: *u}\n", "a mapping that holds itself"),
    Named("tune: {space: &s {ft: [*s]}}\n", "tune.space that holds itself"),
    Named("report: {mia_features: &m [*m]}\n", "report.mia_features that holds itself"),
    Named("prune: &p {method: omp, options: *p}\n", "prune.options that holds itself"),
    Named("unlearn: {retrain: {}, ft: &o {lr: 0.1, x: *o}}\n", "a method option that holds itself"),
    Named("seeds: " + deep(10_000) + "\n", "seeds nested 10,000 deep"),
    Named("train: " + deep(10_000, "{a: ", "}") + "\n", "train nested 10,000 deep in mappings"),
    Named("seeds: " + deep(100) + "\n", "seeds nested 100 deep"),
    Named("".join(" " * i + f"k{i}:\n" for i in range(500)), "block mappings nested 500 deep"),
    Named("seeds: [" + "0, " * 50_000 + "0]\n", "50,001 seeds"),
    Named("seeds: [" + "0, " * 10_000 + "0]\n", "10,001 seeds"),
    Named("kind: audit\nunlearn: {retrain: nan}\n", "an audit whose retrain options are a string"),
    Named("unlearn: {retrain: 5, ft: [1]}\n", "method options that are no mapping"),
    Named("description: " + "x" * 1_100_000 + "\n", "a 1.1 MB description"),
    Named("description: '" + "\x1b]0;title\x07" * 100 + "'\n", "escape sequences"),
    Named("seeds: !!python/object/apply:os.system ['true']\n", "a python/object/apply tag"),
    Named("!!python/object/new:os.system [true]\n", "a python/object/new document"),
    Named("seeds: !!python/name:os.system\n", "a python/name tag"),
    Named("seeds: !!binary aGVsbG8=\n", "binary seeds"),
    Named("unlearn: !!set {ft, retrain}\n", "unlearn as a set"),
    Named("seeds: !!set {1, 2}\n", "seeds as a set"),
    Named("seeds: [2001-12-14]\ndescription: 2001-12-14t21:59:43.10-05:00\n", "timestamps"),
    Named("? [a, b]\n: c\n", "a list as a key"),
    Named("? {a: b}\n: c\n", "a mapping as a key"),
    Named("seeds: [1]\n---\nseeds: [2]\n", "two documents"),
    Named("seeds: *nowhere\n", "an undefined alias"),
    Named("seeds: [1]\nseeds: [2]\n", "a key given twice"),
    Named("prune: {method: imp, imp_rate: 1.0e-300, rates: [0.95]}\n", "IMP rounds of 1e-300"),
    Named("prune: {method: imp, imp_rate: 1.0e-9, rates: [0.95]}\n", "IMP rounds of 1e-9"),
    Named("prune: {method: imp, imp_rate: 0.5, rates: [0.9999999999999999]}\n", "IMP to 1 - 1e-16"),
    Named("train: {epochs: 99999999999999999999}\n", "epochs beyond int64"),
    Named("seeds: [18446744073709551616]\nforget_seed: -99999999999999999999\n", "seeds beyond 64 bits"),
    Named("val_fraction: .nan\n", "val_fraction NaN"),
    Named("val_fraction: 2\nsubset: -1\n", "val_fraction 2"),
    Named("data: /etc/passwd\ndataset: imagefolder\n", "an imagefolder of /etc/passwd"),
    Named("0\n", "a zero document"),
    Named("~\n", "a null document"),
    Named("\ufeffseeds: [1]\n", "a byte-order mark"),
]
shipped_texts = {}


def shipped(name: str) -> str:
    from smu.workflows.recipes.catalog import find

    if name not in shipped_texts:
        found = find(name)
        assert found is not None, name
        shipped_texts[name] = found.text()
    return shipped_texts[name]


def shipped_names() -> list[str]:
    from smu.workflows.recipes.catalog import shipped as every

    return [r.name for r in every()]


SHIPPED = shipped_names()


@dataclasses.dataclass(frozen=True)
class Edit:
    """A shipped recipe (``name``) changed: ``set`` a key path (by position among its paths) to a value,
    ``del`` one, or, on its text, ``dup``/``drop`` a line or ``cut`` it short."""

    name: str
    ops: tuple

    def text(self) -> str:
        text = shipped(self.name)
        raw = yaml.safe_load(text)
        structural = [op for op in self.ops if op[0] in ("set", "del")]
        if structural:
            for op in structural:
                paths = key_paths(raw)
                path = paths[op[1] % len(paths)]
                parent = raw
                for part in path[:-1]:
                    parent = parent[part]
                if op[0] == "del":
                    del parent[path[-1]]
                else:
                    parent[path[-1]] = op[2]
            text = dump(raw, flow=bool(self.ops[0][1] % 2))
        for op in self.ops:
            lines = text.splitlines(keepends=True)
            if op[0] == "dup" and lines:
                i = op[1] % len(lines)
                lines.insert(i, lines[i])
            elif op[0] == "drop" and lines:
                del lines[op[1] % len(lines)]
            elif op[0] == "cut":
                lines = [text[: op[1] % (len(text) + 1)]]
            text = "".join(lines)
        return text


def key_paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    paths = []
    if isinstance(node, dict):
        for k, v in node.items():
            paths.append((*prefix, k))
            paths += key_paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            paths.append((*prefix, i))
            paths += key_paths(v, (*prefix, i))
    return paths


edit = st.builds(
    Edit,
    st.sampled_from(SHIPPED),
    st.lists(
        st.one_of(
            st.tuples(st.just("set"), st.integers(0, 10**6), yaml_value),
            st.tuples(st.just("set"), st.integers(0, 10**6), scalar),
            st.tuples(st.just("del"), st.integers(0, 10**6)),
            st.tuples(st.sampled_from(["dup", "drop", "cut"]), st.integers(0, 10**6)),
        ),
        min_size=1,
        max_size=4,
    ).map(tuple),
)


def recipe_texts(special: list[Named]) -> st.SearchStrategy[str | Edit]:
    return st.one_of(
        st.text(max_size=200),
        document.map(dump),
        document.map(lambda d: dump(d, flow=True)),
        st.sampled_from(special),
        edit,
    )


recipe_text = recipe_texts(SPECIAL_RECIPES)
dotted = st.one_of(
    st.sampled_from(
        [
            "seeds",
            "unlearn.ft.lr",
            "unlearn.ft",
            "unlearn",
            "train.epochs",
            "prune.rates",
            "prune.method",
            "prune.imp_rate",
            "tune.space.ft",
            "tune.methods",
            "audit.models",
            "scenarios",
            "forget_seed",
            "description",
            "train",
            "prune.synflow_iterations",
            "unlearn.salun.saliency",
            "kind",
            "seeds.0",
            "a..b",
            ".",
            "",
            "unlearn.ft.lr.x",
        ]
    ),
    st.lists(word, min_size=1, max_size=4).map(".".join),
    st.text(max_size=20),
)
override_value = st.one_of(
    yaml_value.map(lambda v: dump(v, flow=True).strip().removesuffix("...").strip()),
    st.text(max_size=20),
    st.sampled_from(
        [
            Named(flow_bomb(SMALL_BOMB), "a flow alias bomb"),
            Named(deep(10_000), "a list nested 10,000 deep"),
            Named(deep(10_000, "{a: ", "}"), "a mapping nested 10,000 deep"),
            "!!python/name:os.system",
            "!!python/object/apply:os.system ['true']",
            "&a [*a]",
            "*a",
            "[1",
            "{",
            "'",
            "\x00",
            "\x1b[31m",
            "1e-300",
            "[18446744073709551616]",
            "{ft: {lr: .nan}}",
            Long("x" * 100_000),
        ]
    ),
)
override = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", dotted, override_value),
    st.text(max_size=30),
)
overrides = st.lists(override, max_size=3)


def text_of(case: str | Edit) -> str:
    return case.text() if isinstance(case, Edit) else str(case)  # plain str: libyaml takes no subclass


def bytes_of(case: bytes | str | Edit) -> bytes:
    return case if isinstance(case, bytes) else text_of(case).encode("utf-8", "surrogatepass")


def first_steps(recipe: Any) -> None:
    """What a run of an accepted recipe does first, for the embedded digits: load the splits of its
    first seeds and resolve its first scenarios with its forget seed. A value the checks let through
    must not crash there (a refusal then is no crash, though the checks should have caught it)."""
    from smu.data import load_splits
    from smu.data.forget import resolve_forget

    if isinstance(recipe, SmuError) or recipe.dataset != "digits" or recipe.data is not None:
        return
    for seed in recipe.seeds[:2]:
        splits = outcome(
            lambda s=seed: load_splits(
                "digits", val_fraction=recipe.val_fraction, seed=s, subset=recipe.subset
            )
        )
        if not isinstance(splits, SmuError):
            for spec in recipe.scenarios[:2]:
                outcome(lambda s=spec, sp=splits: resolve_forget(s, sp, recipe.forget_seed))


@settings(max_examples=examples(1.0))
@given(recipe_text, overrides)
def test_any_recipe_text_is_parsed_or_refused(case, items):
    """parse_recipe(label, text, overrides): what ``smu run`` and a Ray worker check a recipe with."""
    from smu.workflows.recipes.config import parse_recipe

    text = text_of(case)
    recipe = outcome(lambda: parse_recipe("fuzz.yaml", text, [str(i) for i in items]))
    first_steps(recipe)


@settings(max_examples=examples(0.5))
@given(st.sampled_from(SHIPPED), overrides)
def test_a_shipped_recipe_with_any_overrides_is_parsed_or_refused(name, items):
    from smu.workflows.recipes.config import parse_recipe

    first_steps(outcome(lambda: parse_recipe(name, shipped(name), [str(i) for i in items])))


def recipe_files(texts: st.SearchStrategy[str | Edit]) -> st.SearchStrategy[bytes | str | Edit]:
    return st.one_of(
        st.binary(max_size=300),
        texts,
        st.builds(
            lambda t, enc: t.encode(enc),
            st.sampled_from(["seeds: [1]\n", "description: é\n"]),
            st.sampled_from(["utf-16", "latin-1", "utf-32"]),
        ),
    )


recipe_bytes = recipe_files(recipe_text)
BIG = ("50,001 seeds", "10,001 seeds")
"""Planned one by one (test_smu_run_dry_run_of_each_special_recipe), not among Hypothesis's examples,
which it may run many times while it shrinks a failure."""
recipe_bytes_cli = recipe_files(recipe_texts([r for r in SPECIAL_RECIPES if r.label not in BIG]))


@settings(max_examples=examples(0.5))
@given(recipe_bytes)
def test_any_recipe_file_is_loaded_or_refused(case):
    """load_recipe(path): a recipe file with any bytes in it."""
    from smu.workflows.recipes.config import load_recipe

    def write(folder: Path) -> Path:
        (folder / "recipe.yaml").write_bytes(bytes_of(case))
        return folder / "recipe.yaml"

    with folder_with(write) as (path, root), unchanged(root):
        outcome(lambda: load_recipe(path))


@settings(max_examples=examples(0.25))
@given(recipe_bytes_cli, overrides)
def test_smu_run_dry_run_of_any_recipe(case, items):
    """``smu run FILE --dry-run --out DIR -- OVERRIDES``: checked and planned, nothing written, no DIR."""

    def write(folder: Path) -> Path:
        (folder / "recipe.yaml").write_bytes(bytes_of(case))
        return folder / "recipe.yaml"

    with folder_with(write) as (path, root), unchanged(root / "in"), nothing_new_here():
        out = root / "out"
        check_cli(*cli(["run", path, "--dry-run", "--out", out, "--", *map(str, items)]))
        assert not out.exists(), f"smu run --dry-run created {out}: {listing(out)}"


@pytest.mark.parametrize("text", SPECIAL_RECIPES, ids=[r.label for r in SPECIAL_RECIPES])
def test_each_special_recipe_is_parsed_or_refused(text):
    """Every hand-made recipe (bombs, deep nesting, tags, huge documents, odd numbers), each time: among
    Hypothesis's examples any one of them comes up only now and then."""
    from smu.workflows.recipes.config import parse_recipe

    first_steps(outcome(lambda: parse_recipe("special.yaml", str(text), [])))


CLI_SPECIAL = [r for r in SPECIAL_RECIPES if r.label != "50,001 seeds"]


@pytest.mark.slow
@pytest.mark.parametrize("text", CLI_SPECIAL, ids=[r.label for r in CLI_SPECIAL])
def test_smu_run_dry_run_of_each_special_recipe(text, tmp_path):
    """``smu run FILE --dry-run`` of every hand-made recipe but the 50,001 seeds (10,001 show the cost of
    planning many seeds)."""
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "recipe.yaml"
    path.write_text(str(text), encoding="utf-8")
    with unchanged(tmp_path / "in"), nothing_new_here():
        check_cli(*cli(["run", path, "--dry-run", "--out", tmp_path / "out"]))
    assert not (tmp_path / "out").exists()


BOMB_CHILD = textwrap.dedent(
    """
    import json, os, resource, signal, sys, time
    from smu.core.errors import SmuError
    from smu.workflows.recipes.config import parse_recipe

    pages = int(open("/proc/self/statm").read().split()[0])
    cap = pages * os.sysconf("SC_PAGE_SIZE") + {headroom}
    resource.setrlimit(resource.RLIMIT_AS, (cap, resource.RLIM_INFINITY))

    class Hung(BaseException):
        pass

    def hung(signum, frame):
        raise Hung("still parsing after {hang} s")

    signal.signal(signal.SIGALRM, hung)
    results = []
    for text, items in json.load(sys.stdin):
        start = time.perf_counter()
        signal.alarm({hang})
        try:
            parse_recipe("bomb.yaml", text, items)
            result = {{"outcome": "accepted"}}
        except SmuError as e:
            result = {{"outcome": "refused", "message": str(e)[:500], "length": len(str(e))}}
        except BaseException as e:
            result = {{"outcome": type(e).__name__, "message": str(e)[:500]}}
        signal.alarm(0)
        result["seconds"] = time.perf_counter() - start
        results.append(result)
    print(json.dumps(results))
    """
)
FULL_BOMB = 8
"""Levels of ten: 10**8 values in about 200 bytes."""
BOMBS = {
    "seeds": (alias_bomb(FULL_BOMB), []),
    "mapping-in-unlearn.ft": (alias_bomb(FULL_BOMB, "map", key="unlearn.ft"), []),
    "tune.space.ft": (alias_bomb(FULL_BOMB, key="tune.space.ft"), []),
    "mapping-in-train": (alias_bomb(FULL_BOMB, "map", key="train"), []),
    "override-seeds": ("seeds: [0]\n", [f"seeds={flow_bomb(FULL_BOMB)}"]),
    "override-unlearn.ft": ("seeds: [0]\n", [f"unlearn.ft={flow_bomb(FULL_BOMB)}"]),
}


@pytest.fixture(scope="module")
def bombs() -> dict[str, Any]:
    """What parse_recipe made of each full-size bomb, in one subprocess capped at 1 GB more than it
    starts with, each bomb stopped after 10 s, so that a reader that expands them cannot take the
    machine down: name -> {outcome: accepted|refused|<exception type>, message, length, seconds}."""
    child = BOMB_CHILD.format(headroom=HEADROOM, hang=int(SECONDS))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", child],
            input=json.dumps(list(BOMBS.values())),
            capture_output=True,
            text=True,
            timeout=30 + SECONDS * len(BOMBS),
            env=env,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the subprocess parsing the bombs did not finish")
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(zip(BOMBS, json.loads(done.stdout.strip().splitlines()[-1]), strict=True))


@pytest.mark.parametrize("name", list(BOMBS))
def test_an_alias_bomb_stays_small(bombs, name):
    """A recipe of a few hundred bytes that stands for 10**8 values is refused (or read) in a few
    seconds, in a short message."""
    result = bombs[name]
    assert result["outcome"] in ("refused", "accepted"), result
    assert result["seconds"] <= SECONDS, result
    if result["outcome"] == "refused":
        assert result["length"] <= MESSAGE and "\n" not in result["message"], result


# ── Research checkpoints (smu import) ───────────────────────────────────────────────────────────────


def research_net() -> torch.nn.Module:
    from smu.models import build_model

    torch.manual_seed(0)
    return build_model("cnn", in_channels=1, image_size=8, num_classes=10, mean=[0.3], std=[0.3]).net


@pytest.fixture(scope="module")
def checkpoints() -> dict[str, Any]:
    """Valid research-code checkpoints of a digits cnn, as state dicts: plain, pruned with
    torch.nn.utils.prune (weight_orig and weight_mask), DataParallel's ``module.`` keys under
    ``state_dict`` with an epoch beside them; and a 600 MB deflate bomb as bytes."""
    from torch.nn.utils import prune

    plain = research_net().state_dict()
    net = research_net()
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            prune.l1_unstructured(m, "weight", amount=0.5)
    pruned = {k: v.clone() for k, v in net.state_dict().items()}
    wrapped = {"state_dict": {f"module.{k}": v for k, v in plain.items()}, "epoch": 3, "best_acc": 0.9}
    return Held(plain=plain, pruned=pruned, wrapped=wrapped, bomb=deflate_bomb(600 * 2**20))


def saved(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def deflate_bomb(size: int) -> bytes:
    """A torch.save zip whose tensor record is ``size`` zero bytes, deflated (to about 1/200)."""
    source = zipfile.ZipFile(io.BytesIO(saved({"fc.weight": torch.zeros(4)})))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for info in source.infolist():
            if not info.filename.endswith("/data/0"):
                z.writestr(info, source.read(info.filename))
                continue
            bomb = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            bomb.compress_type = zipfile.ZIP_DEFLATED
            bomb._compresslevel = 1  # fastest: the bomb is made in under a second
            with z.open(bomb, "w") as f:
                chunk = bytes(1 << 20)
                for _ in range(size >> 20):
                    f.write(chunk)
    return out.getvalue()


CODE = "import pathlib; pathlib.Path({!r}).write_text('ran')"


def malicious(path: str) -> list[bytes]:
    """Pickles that would run code (write ``path``) if unpickled by a plain pickle.load."""

    class Payload:
        def __reduce__(self) -> Any:
            return (exec, (CODE.format(path),))

    legacy = pickle.dumps(Payload(), protocol=2)
    zipped = saved({"fc.weight": torch.zeros(1)})
    source = zipfile.ZipFile(io.BytesIO(zipped))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for info in source.infolist():
            data = (
                pickle.dumps({"fc.weight": Payload()})
                if info.filename.endswith("data.pkl")
                else source.read(info.filename)
            )
            z.writestr(info.filename, data)
    return [legacy, out.getvalue()]


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A research checkpoint: made-up ``bytes``, a valid one (``base``) cut short (``truncate``) or with
    bytes replaced (``flip``), its state dict changed key by key (``edit``), any ``object`` torch.save
    takes, the deflate ``bomb``, or a pickle that would run ``code``."""

    how: str
    base: str = "plain"
    ops: tuple = ()

    def apply(self, bases: Mapping[str, Any], folder: Path) -> bytes:
        if self.how == "bytes":
            return self.ops[0]
        if self.how == "object":
            return saved(self.ops[0])
        if self.how == "bomb":
            return bases["bomb"]
        if self.how == "code":
            return malicious(str(folder / "ran"))[self.ops[0] % 2]
        if self.how == "edit":
            return saved(edit_state(bases[self.base], self.ops))
        data = saved(bases[self.base])
        if self.how == "truncate":
            return data[: self.ops[0] % (len(data) + 1)]
        out = bytearray(data)
        for position, value in self.ops:
            out[position % len(out)] = value
        return bytes(out)


def edit_state(base: Any, ops: tuple) -> Any:
    obj = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    state = obj["state_dict"] if isinstance(obj.get("state_dict"), dict) else obj
    names = sorted(k for k in state if isinstance(k, str))
    for op in ops:
        kind = op[0]
        if kind == "wrap":
            obj = {op[1]: obj}
            continue
        if kind == "add":
            state[op[1]] = op[2]
            continue
        name = names[op[1] % len(names)]
        if name not in state:
            continue
        t = state[name]
        with contextlib.suppress(RuntimeError, ValueError, TypeError, OverflowError, AttributeError):
            if kind == "drop":
                del state[name]
            elif kind == "rename":
                state[op[2]] = state.pop(name)
            elif kind == "value":
                state[name] = op[2]
            elif kind == "shape" and not (op[2] and max(op[2]) <= 10**5):
                state[name] = torch.empty(op[2])
            elif kind in ("dtype", "shape", "set", "fill"):
                state[name] = edited(t, op)
    return obj


def small_tensor(shape: list[int], dtype: str) -> torch.Tensor:
    return torch.zeros(shape).to(TORCH_DTYPES[dtype])


tensor = st.builds(small_tensor, small_shape, st.sampled_from(sorted(TORCH_DTYPES)))
empty_huge = st.sampled_from([(10**9, 0), (0, 10**9), (2**31, 0), (10**7, 0), (10**6, 0), (0,), (0, 0, 0, 0)])
pickled = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10) | tensor,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(
            st.one_of(tensor_name, st.integers(), st.sampled_from(["fc.weight", "state_dict", "model"])),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)
state_key = st.one_of(
    st.sampled_from(
        [
            "fc.weight",
            "fc.bias",
            "features.0.weight_orig",
            "features.0.weight_mask",
            "normalize.mean",
            "normalize.std",
            "module.fc.weight",
            "features.1.running_mean_orig",
            "features.1.running_mean_mask",
            "fc.weight_orig",
            "fc.weight_mask",
            "x_orig",
            "_mask",
            "_orig",
            "net.fc.weight",
        ]
    ),
    tensor_name,
    st.integers(),
    st.tuples(st.integers(), st.integers()),
)
state_op = st.one_of(
    st.tuples(st.just("drop"), index),
    st.tuples(st.just("rename"), index, state_key),
    st.tuples(st.just("value"), index, pickled),
    st.tuples(st.just("shape"), index, small_shape | empty_huge.map(list)),
    st.tuples(st.just("dtype"), index, st.sampled_from(sorted(TORCH_DTYPES))),
    st.tuples(st.just("set"), index, special, st.integers(0, 2**20)),
    st.tuples(st.just("fill"), index, special),
    st.tuples(st.just("add"), state_key, pickled | empty_huge.map(torch.empty)),
    st.tuples(st.just("wrap"), st.sampled_from(["state_dict", "model_state_dict", "model", "other"])),
)
valid_checkpoint = st.sampled_from(["plain", "pruned", "wrapped"])
checkpoint = st.one_of(
    st.builds(Checkpoint, st.just("bytes"), st.just("-"), st.tuples(made_up)),
    st.builds(Checkpoint, st.just("truncate"), valid_checkpoint, st.tuples(st.integers(0, 2**20))),
    st.builds(
        Checkpoint,
        st.just("flip"),
        valid_checkpoint,
        st.lists(st.tuples(st.integers(0, 2**20), st.integers(0, 255)), min_size=1, max_size=8).map(tuple),
    ),
    st.builds(
        Checkpoint, st.just("edit"), valid_checkpoint, st.lists(state_op, min_size=1, max_size=4).map(tuple)
    ),
    st.builds(
        Checkpoint,
        st.just("edit"),
        st.sampled_from(["plain", "pruned"]),
        st.lists(state_op, min_size=1, max_size=4).map(tuple),
    ),
    st.builds(Checkpoint, st.just("object"), st.just("-"), st.tuples(pickled)),
    st.just(Checkpoint("bomb")),
    st.builds(Checkpoint, st.just("code"), st.just("-"), st.tuples(st.integers(0, 1))),
)


def test_the_valid_checkpoints_are_imported(checkpoints, tmp_path):
    from smu.io.importer import import_checkpoint

    for name in ("plain", "pruned", "wrapped"):
        (tmp_path / f"{name}.pth").write_bytes(saved(checkpoints[name]))
        result = import_checkpoint(tmp_path / f"{name}.pth", "cnn", "digits", tmp_path / name)
        assert (result["mask"] is not None) == (name == "pruned"), result
        artifacts.load_model(result["model"])


@pytest.mark.slow
@settings(max_examples=examples(1.0))
@given(checkpoint)
def test_any_checkpoint_is_imported_or_refused_without_running_code(checkpoints, case):
    """import_checkpoint(path, "cnn", "digits", out): either model.safetensors (and its mask) that load,
    or a refusal that leaves no out folder; never code run (a pickle that would write a file beside
    the checkpoint is refused and writes nothing)."""
    from smu.io.importer import import_checkpoint

    def write(folder: Path) -> Path:
        (folder / "ckpt.pth").write_bytes(case.apply(checkpoints, folder))
        return folder / "ckpt.pth"

    with folder_with(write) as (path, root), unchanged(root / "in"):
        out = root / "out"
        result = outcome(lambda: import_checkpoint(path, "cnn", "digits", out))
        if isinstance(result, SmuError):
            assert not out.exists(), f"a refused import left {listing(out)}"
        else:
            outcome(lambda: artifacts.load_model(result["model"]))


@settings(max_examples=examples(0.15))
@given(checkpoint)
def test_smu_import_of_any_checkpoint(checkpoints, case):
    def write(folder: Path) -> Path:
        (folder / "ckpt.pth").write_bytes(case.apply(checkpoints, folder))
        return folder / "ckpt.pth"

    with folder_with(write) as (path, root), unchanged(root / "in"), nothing_new_here():
        out = root / "out"
        code, stdout, stderr = cli(
            ["import", path, "--arch", "cnn", "--dataset", "digits", "--out", out, "-q"]
        )
        check_cli(code, stdout, stderr)
        if code != 0:
            assert not out.exists(), f"a failed smu import left {listing(out)}"


# ── Run folders: report.json and recipe.yaml, as smu plot reads them ──────────────────────────────────


def cells(**values: float) -> dict[str, Any]:
    return {key: {"mean": v, "std": 1.0, "n": 2} for key, v in values.items()}


def run_report() -> dict[str, Any]:
    """A valid report.json of smu run: an unlearning table, an audit (ε files beside it), a Trojan
    cleanse and the models, each with what its figure draws."""

    def table(kind: str, columns: list[Any], row: dict[str, Any]) -> dict[str, Any]:
        methods = ("retrain", "ga")
        return {
            "kind": kind,
            "title": kind,
            "scenario": "random:10%",
            "groups": ["dense", "sparse-0.5"],
            "rates": [0.0, 0.5],
            "columns": columns,
            "rows": [{"method": m, "cells": {"dense": row, "sparse-0.5": row}} for m in methods],
        }

    models = [
        {"method": name, "rate": rate, "cells": {"": cells(sparsity=100 * rate, test_acc=90.0)}}
        for name, rate in (("dense", 0.0), ("sparse-0.5", 0.5))
    ]
    return {
        "out": "run",
        "report": [
            table("unlearn", [["UA", "ua"], ["Avg. Gap", "avg_gap"]], cells(ua=5.0, avg_gap=2.0)),
            table("audit", [["F", "forgetting_quality"]], cells(forgetting_quality=0.5)),
            table("backdoor", [], cells(sa_before=90, asr_before=99, sa_after=88, asr_after=10)),
        ],
        "claims": [],
        "models": {
            "kind": "models",
            "rows": models,
            "rounds": [{"seed": 0, "sparsity": s, "test_acc": 90 - s / 10} for s in (0.0, 50.0)],
        },
        "markdown": "",
        "wall_s": 1,
    }


def write_run_folder(folder: Path, report: Any, recipe: str) -> Path:
    """report.json and recipe.yaml as given; retrain's and ga's audit verdicts (ε) for seed 0."""
    run = folder / "run"
    for method in ("retrain", "ga"):
        where = run / "seed-0" / "random-10-" / "dense" / method / "logit-both" / "audit.safetensors"
        eps = torch.tensor([0.1, 1.0, 7.0, math.inf], dtype=torch.float64)
        tensorfile.save_tensors(where, {"epsilon": eps}, {"smu.kind": "audit"})
    (run / "report.json").write_text(json.dumps(report))
    (run / "recipe.yaml").write_text(f"# smu run fuzz.yaml\n{recipe}")
    return run


HOSTILE_TEXT = ["../../escaped", "..", "/tmp/x", "[bold red]x[/]", "\x1b]0;title\x07", "a" * 3000, ""]


def json_values(hostile: list[Any]) -> st.SearchStrategy[Any]:
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(),
        st.sampled_from(hostile),
        st.text(max_size=20),
    )
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=6,
    )


def places(obj: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into ``obj``: keys of mappings and indices of lists."""
    found = [at]
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for key, value in items:
        found += places(value, (*at, key))
    return found


@dataclasses.dataclass(frozen=True)
class ReportEdit:
    """Damage to a valid report.json: at each chosen place (a path, or an index into :func:`places` taken
    modulo their number), the value replaced by another or the entry deleted; then recipe.yaml's text."""

    ops: tuple[tuple[int, str, Any], ...]
    recipe: str

    def apply(self) -> Any:
        report = run_report()
        for where, how, value in self.ops:
            spots = places(report)[1:]
            if isinstance(where, tuple) and where not in spots:
                continue  # gone with an earlier edit
            *parent, key = where if isinstance(where, tuple) else spots[where % len(spots)]
            holder = report
            for step in parent:
                holder = holder[step]
            if how == "delete":
                del holder[key]
            else:
                holder[key] = value
        return report


NAMES_IN_PATHS = [
    ("report", 1, "scenario"),
    ("report", 1, "groups", 0),
    ("report", 1, "rows", 1, "method"),
    ("report", 0, "scenario"),
]
"""The report's names that smu plot joins into paths: the audit files it reads, the figures it writes."""
ESCAPE = ReportEdit(((("report", 1, "groups", 0), "set", "dense/."),), "seeds: [0]\n")
"""A model name with a slash that still finds its ε files: its figure would be written in a folder of its
own below --out (with ``dense/../../..`` above it). Hypothesis may not find it in 20 tries."""

report_edit = st.builds(
    ReportEdit,
    st.lists(
        st.tuples(
            st.one_of(st.integers(0, 10**6), st.sampled_from(NAMES_IN_PATHS)),
            st.sampled_from(["delete", "set"]),
            json_values(HOSTILE_TEXT),
        ),
        min_size=1,
        max_size=3,
    ).map(tuple),
    st.sampled_from(
        [
            "seeds: [0]\n",
            "seeds: ['../..']\naudit: {statistic: ../../.., thresholds: x}\n",
            "audit: [1]\n",
            "seeds: 7\n",
        ]
    ),
)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="smu[plot]")
@settings(max_examples=examples(0.1))
@given(report_edit)
@example(ESCAPE)
def test_a_damaged_run_folder_is_plotted_or_refused_and_only_into_out(edit):
    """plot_run(run, out): a report.json and recipe.yaml edited by hand or by someone else. Figures go
    only into ``out`` (a figure's name comes from the report's scenario and model names), and none on a
    refusal; the run folder is left as it was."""
    from smu.workflows.plot import plot_run

    def write(folder: Path) -> Path:
        return write_run_folder(folder, edit.apply(), edit.recipe)

    with folder_with(write) as (run, root), unchanged(root / "in"):
        out = root / "figures"
        result = outcome(lambda: plot_run(run, out, formats=("svg",)))
        written = sorted(
            str(p.relative_to(root)) for p in root.rglob("*") if not p.is_relative_to(root / "in")
        )
        if isinstance(result, SmuError):
            assert written == [], f"a refused plot wrote {written}"
        else:
            assert all(w == "figures" or w.startswith("figures/") for w in written), written
            assert all("/" not in f["name"] and f["name"] not in ("", ".", "..") for f in result["figures"])


json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=24,
)
run_files = st.dictionaries(
    st.sampled_from(["command", "result", "versions", "tags", "report", "title", "wall_s"]), json_value
)


@given(st.sampled_from(["manifest.json", "report.json"]), run_files, run_files)
def test_smu_log_reads_any_run_folder_or_refuses_it(top, fields, step):
    """`smu log` reads run folders smu wrote, but a folder can be edited, cut short or foreign."""
    from smu import loggers
    from smu.workflows.log import top_record

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / top).write_text(json.dumps(fields))
        (root / "step").mkdir()
        (root / "step" / "step.json").write_text(json.dumps(step))
        try:
            found = top_record(root)
        except SmuError as e:
            assert len(str(e).splitlines()) == 1 and len(str(e)) <= 500
            return
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in found["params"].items())
        assert all(isinstance(v, float) and math.isfinite(v) for v in found["final"].values())
        settings = loggers.settings(["csv"], log_dir=root / "csv")
        from smu.workflows.log import send

        sent = send(root, ["csv"], log_dir=root / "csv")
        assert sent["runs"][0]["metrics"] == len(found["final"]) and settings.kinds == ("csv",)
