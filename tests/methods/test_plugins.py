"""The plug-in of docs/PLUGINS.md, installed where importlib.metadata finds it, works like a built-in.

The package is written from the page itself (its pyproject's entry points and its module), as a
distribution on a folder added to PYTHONPATH: `importlib.metadata.entry_points` reads its
`entry_points.txt`, exactly as it would after `pip install`.
"""

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # see pyproject.toml: pytest -m "not slow" is the inner loop

DOC = (Path(__file__).parents[2] / "docs" / "PLUGINS.md").read_text()


def code_block(after: str, language: str) -> str:
    """The first ``language`` block after the line ``after`` in docs/PLUGINS.md."""
    start = DOC.index(after)
    return re.search(rf"```{language}\n(.*?)```", DOC[start:], re.S).group(1)


def install(folder: Path, name: str, module: str, code: str, entry_points: str) -> None:
    """A distribution as pip leaves it: the module and a .dist-info with METADATA and entry points."""
    (folder / f"{module}.py").write_text(code)
    info = folder / f"{name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(entry_points)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("site")
    pyproject = code_block("## A complete example", "toml")
    groups = re.findall(r'\[project\.entry-points\."([^"]+)"\]\n([^\[]+)', pyproject)
    entry_points = "".join(
        f"[{group}]\n{lines.replace(chr(34), '').replace(' = ', '=')}\n" for group, lines in groups
    )
    install(folder, "smu-shrink", "smu_shrink", code_block("`smu_shrink.py`", "python"), entry_points)
    return folder


def smu_with(site, *args, extra_path=()):
    """``smu ARGS...`` in a process of its own that finds the plug-ins installed in ``site``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), *map(str, extra_path)]))
    return subprocess.run(
        [sys.executable, "-m", "smu", *map(str, args)], capture_output=True, text=True, env=env
    )


def test_the_documented_plugin_registers_both_methods_through_entry_points(site):
    assert (
        "[smu.unlearning]\nshrink-perturb=smu_shrink:SHRINK_PERTURB"
        in (next(site.glob("*.dist-info")) / "entry_points.txt").read_text()
    )
    help_text = smu_with(site, "unlearn", "--method", "shrink-perturb", "--help").stdout
    assert "shrink-perturb options" in help_text
    for words in ("--shrink", "λ: every weight is multiplied", "--perturb", "(default 0.5)", "--epochs"):
        assert words in help_text, words
    assert "--alpha" not in help_text  # only its own options
    listing = smu_with(site, "unlearn", "--help").stdout
    assert "shrink-perturb: shrink and perturb every weight" in listing
    assert "layerwise" in smu_with(site, "prune", "--help").stdout


def test_a_plugin_method_prunes_unlearns_and_is_validated_like_a_builtin(site, tmp_path):
    pruned = smu_with(
        site,
        "prune",
        "--method",
        "layerwise",
        "--rate",
        "0.6",
        "--dataset",
        "digits",
        "--arch",
        "cnn",
        "--epochs",
        "2",
        "--rewind-epoch",
        "1",
        "--out",
        tmp_path / "p",
        "--json",
    )
    assert pruned.returncode == 0, pruned.stderr
    out = json.loads(pruned.stdout)
    assert out["sparsity"] == pytest.approx(60, abs=1)
    per_layer = list(out["per_layer"].values())
    assert max(per_layer) - min(per_layer) < 2  # layer-wise: every layer loses the same share (percent)
    result = smu_with(
        site,
        "unlearn",
        "--model",
        out["model"],
        "--forget",
        "class:3",
        "--method",
        "shrink-perturb",
        "--shrink",
        "0.3",
        "--epochs",
        "1",
        "--out",
        tmp_path / "u",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    unlearned = json.loads(result.stdout)
    assert unlearned["config"]["shrink"] == 0.3 and unlearned["config"]["perturb"] == 0.01
    assert unlearned["sparsity"] == pytest.approx(60, abs=1) and unlearned["metrics"]["ua"] >= 0
    bad = smu_with(
        site,
        "unlearn",
        "--model",
        out["model"],
        "--forget",
        "class:3",
        "--method",
        "shrink-perturb",
        "--shrink",
        "1.5",
        "--out",
        tmp_path / "bad",
    )
    assert bad.returncode == 2 and "--shrink 1.5 must be in (0, 1]" in bad.stderr
    assert bad.stderr.count("\n") == 1 and not (tmp_path / "bad").exists()
    other = smu_with(
        site, "unlearn", "--model", out["model"], "--forget", "class:3", "--method", "ft", "--shrink", "0.3"
    )
    assert other.returncode == 2 and "--shrink does not apply to --method ft" in other.stderr


def test_a_recipe_takes_a_plugin_method_and_checks_its_options_before_compute(site, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("""
dataset: digits
arch: cnn
train: {epochs: 2, lr: 0.05, batch_size: 64}
prune: {method: layerwise, rates: [0.5], rewind_epoch: 1}
scenarios: ["class:3"]
unlearn:
  retrain: {epochs: 2, lr: 0.05, batch_size: 64}
  shrink-perturb: {epochs: 1, shrink: 0.5}
""")
    bad = smu_with(site, "run", recipe, "unlearn.shrink-perturb.perturb=-1", "--dry-run")
    assert bad.returncode == 2 and "unlearn.shrink-perturb.perturb -1.0 must be >= 0" in bad.stderr
    result = smu_with(site, "run", recipe, "--out", tmp_path / "run", "--json")
    assert result.returncode == 0, result.stderr
    table = json.loads(result.stdout)["report"][0]
    assert [row["method"] for row in table["rows"]] == ["retrain", "shrink-perturb"]
    assert table["groups"] == ["dense", "sparse-0.5"]


def test_a_broken_plugin_is_one_warning_and_the_builtins_keep_working(site, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    install(
        broken,
        "smu-broken",
        "smu_broken",
        "raise ImportError('needs a GPU library')\n",
        "[smu.unlearning]\nbroken = smu_broken:METHOD\n",
    )
    install(
        broken,
        "smu-wrong",
        "smu_wrong",
        "METHOD = 42\n",
        "[smu.unlearning]\nwrong = smu_wrong:METHOD\n",
    )
    result = smu_with(site, "unlearn", "--help", extra_path=[broken])
    assert result.returncode == 0 and "ft: fine-tune on the retain set" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 2, result.stderr
    assert any("'smu-broken' failed to load (ImportError: needs a GPU library)" in w for w in warnings)
    assert any(
        "'smu-wrong' skipped: it is of type int, not UnlearnMethod (from smu.unlearning)" in w
        for w in warnings
    )
    assert "shrink-perturb" in result.stdout  # the good plug-in still loads


TEST_METHODS = '''
from dataclasses import dataclass

import torch

from smu.core.options import Checked
from smu.methods.unlearning import UnlearnMethod


def revive(model, data, cfg, ctx):
    """Changes every weight and forgets the mask: the workflow must put the pruned ones back to 0."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    return model


@dataclass
class BoomConfig(Checked):
    x: float = 1.0
    """Its check divides by it."""

    def check(self):
        return [] if 1 / self.x else []


def boom(model, data, cfg, ctx):
    raise ValueError("the plug-in's own bug")


def poison(model, data, cfg, ctx):
    """Diverges: every weight NaN, the pruned ones too."""
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    return model


REVIVE = UnlearnMethod("revive", "add 1 to every weight, mask forgotten", BoomConfig, revive)
BOOM = UnlearnMethod("boom", "raise from its run", BoomConfig, boom)
POISON = UnlearnMethod("poison", "every weight NaN", BoomConfig, poison)
'''


@pytest.fixture(scope="module")
def methods_site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("methods")
    entry_points = "[smu.unlearning]\nrevive = smu_tests:REVIVE\nboom = smu_tests:BOOM\n"
    entry_points += "poison = smu_tests:POISON\n"
    install(folder, "smu-tests", "smu_tests", TEST_METHODS, entry_points)
    return folder


def test_the_workflow_sets_revived_pruned_weights_back_to_0_with_one_warning(
    site, methods_site, pruned_cnn, tmp_path
):
    from smu.io import artifacts
    from smu.io.inspection import inspect_artifact

    model = pruned_cnn / "round-1" / "model.safetensors"
    given = artifacts.load_model(model, "cpu")
    pruned, _ = given.mask.counts()
    args = ["unlearn", "--model", model, "--forget", "class:3", "--no-eval", "--json", "--out"]
    result = smu_with(site, *args, tmp_path / "revive", "--method", "revive", extra_path=[methods_site])
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert warnings == [
        f"Warning: method 'revive' revived {pruned:,} pruned weights; they were set back to 0"
    ], result.stderr
    out = json.loads(result.stdout)
    saved = artifacts.load_model(out["model"], "cpu")
    assert saved.mask.revived(saved.model) == 0 and out["sparsity"] == round(given.mask.percent(), 2)
    assert inspect_artifact(out["model"])["intact"]
    builtin = smu_with(
        site, *args, tmp_path / "ft", "--method", "ft", "--epochs", "1", extra_path=[methods_site]
    )
    assert builtin.returncode == 0 and "Warning:" not in builtin.stderr, builtin.stderr


def test_nan_at_pruned_weights_is_divergence_one_error_line_no_revival_warning(
    site, methods_site, pruned_cnn, tmp_path
):
    model = pruned_cnn / "round-1" / "model.safetensors"
    args = ["unlearn", "--model", model, "--forget", "class:3", "--no-eval", "--method", "poison"]
    result = smu_with(site, *args, "--out", tmp_path / "nan", extra_path=[methods_site])
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [
        "Error: poison produced NaN or Inf weights; lower its step size (--alpha, --lr); nothing was written"
    ]
    assert not (tmp_path / "nan" / "model.safetensors").exists()


def test_a_plugin_s_unexpected_exception_is_one_line_naming_it_and_a_traceback_with_smu_debug(
    site, methods_site, pruned_cnn, tmp_path
):
    model = pruned_cnn / "round-1" / "model.safetensors"
    args = ["unlearn", "--model", model, "--forget", "class:3", "--method", "boom", "--no-eval", "--out"]
    result = smu_with(site, *args, tmp_path / "run", extra_path=[methods_site])
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(
        "Error: plug-in unlearning method 'boom' (package smu-tests) failed: ValueError: the plug-in's own "
        "bug; SMU_DEBUG=1 shows the traceback"
    )
    check = smu_with(site, *args, tmp_path / "check", "--x", "0", extra_path=[methods_site])
    assert check.returncode == 1 and check.stderr.count("\n") == 1, check.stderr
    assert "'boom' (package smu-tests) failed: ZeroDivisionError" in check.stderr
    env = dict(os.environ, SMU_DEBUG="1", PYTHONPATH=os.pathsep.join(map(str, [site, methods_site])))
    debug = subprocess.run(
        [sys.executable, "-m", "smu", *map(str, args), tmp_path / "debug"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert "ValueError: the plug-in's own bug" in debug.stderr and "PluginError" in debug.stderr


def test_a_builtin_method_s_bug_keeps_its_traceback():
    from smu.methods.unlearning import METHODS

    with pytest.raises(ValueError), METHODS.plugin_code("ft"):
        raise ValueError("a bug of smu's")


def test_a_plugin_whose_option_a_command_would_shadow_or_whose_ranges_nothing_checks_is_refused(
    site, tmp_path
):
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    code = """
from dataclasses import dataclass

from smu.core.options import param
from smu.methods.unlearning import UnlearnMethod


@dataclass
class SeedConfig:
    seed: int = 3


@dataclass
class EvalConfig:
    eval: bool = True


@dataclass
class UncheckedConfig:
    alpha: float = param(0.1, gt=0)


SEED = UnlearnMethod("seeded", "has its own seed", SeedConfig, lambda m, d, c, x: m)
EVAL = UnlearnMethod("evaluated", "has --eval/--no-eval", EvalConfig, lambda m, d, c, x: m)
UNCHECKED = UnlearnMethod("unchecked", "declares a range", UncheckedConfig, lambda m, d, c, x: m)
"""
    entry_points = (
        "[smu.unlearning]\nseeded = smu_shadow:SEED\nevaluated = smu_shadow:EVAL\n"
        "unchecked = smu_shadow:UNCHECKED\n"
    )
    install(shadow, "smu-shadow", "smu_shadow", code, entry_points)
    result = smu_with(site, "unlearn", "--help", extra_path=[shadow])
    assert result.returncode == 0 and "ft: fine-tune on the retain set" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 3, result.stderr
    assert any("'smu-shadow' skipped: its option --seed would be shadowed" in w for w in warnings)
    assert any("'smu-shadow' skipped: its option --eval would be shadowed" in w for w in warnings)
    assert any(
        "declares ranges (alpha) but does not derive from smu.core.options.Checked" in w for w in warnings
    )
    assert "seeded" not in result.stdout and "shrink-perturb" in result.stdout


COMMANDS_TAKING_METHOD_OPTIONS = [
    ("smu.workflows.unlearn", "unlearn"),
    ("smu.workflows.backdoor", "backdoor_cleanse"),
    ("smu.workflows.audit", "audit"),
    ("smu.workflows.tune", "tune"),
]


def test_the_reserved_names_hold_every_option_of_the_commands_and_no_builtin_breaks_the_contract():
    import dataclasses
    import importlib
    import inspect

    from smu.methods.pruning import METHODS as PRUNING
    from smu.methods.pruning.base import prune_problems
    from smu.methods.unlearning import METHODS
    from smu.methods.unlearning.base import RESERVED, method_problems
    from smu.workflows.audit import AuditConfig
    from smu.workflows.tune import TuneConfig

    own = {"json_out", "quiet"}  # every command's --json and -q (smu.cli.wrap)
    for module, function in COMMANDS_TAKING_METHOD_OPTIONS:
        fn = getattr(importlib.import_module(module), function)
        own |= {p.name for p in inspect.signature(fn).parameters.values() if p.kind is not p.VAR_KEYWORD}
    own |= {f.name for cls in (AuditConfig, TuneConfig) for f in dataclasses.fields(cls)}
    assert own <= RESERVED, own - RESERVED
    for name, spec in METHODS.items():
        assert method_problems(spec, METHODS) == [], name
    for name, spec in PRUNING.items():
        assert prune_problems(spec, PRUNING) == [], name
    from smu.execution.engine import TrainConfig
    from smu.methods.pruning.base import RESERVED as PRUNE_RESERVED
    from smu.workflows.prune import prune

    prune_own = {"json_out", "quiet"} | {f.name for f in dataclasses.fields(TrainConfig)}
    prune_own |= set(inspect.signature(prune).parameters)
    assert prune_own <= PRUNE_RESERVED, prune_own - PRUNE_RESERVED


def test_a_pruning_plug_in_whose_option_takes_a_name_of_smu_prune_breaks_the_contract():
    from dataclasses import dataclass

    from smu.methods.pruning import METHODS as PRUNING
    from smu.methods.pruning.base import prune_problems

    @dataclass
    class Clashing:
        seed: int = 3
        epochs: int = 2

    spec = dataclasses.replace(PRUNING["random"], name="clash", config=Clashing)
    assert prune_problems(spec, PRUNING) == [
        "its options seed, epochs would be shadowed by smu prune's own (reserved names: docs/PLUGINS.md)"
    ]


def test_a_plug_in_registered_under_another_name_than_its_own_is_skipped_with_one_warning(site, tmp_path):
    """The CLI checks --method against the entry points' names before loading any, so they must agree."""
    code = (
        "import dataclasses\n\nfrom smu.methods.unlearning.none import METHOD as NONE\n\n"
        'METHOD = dataclasses.replace(NONE, name="actual")\n'
    )
    install(tmp_path, "smu-renamed", "smu_renamed", code, "[smu.unlearning]\nalias = smu_renamed:METHOD\n")
    result = smu_with(site, "unlearn", "--help", extra_path=[tmp_path])
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert result.returncode == 0 and warnings == [
        "Warning: plug-in 'alias' from package 'smu-renamed' skipped: its entry point is named 'alias', its "
        "method 'actual'"
    ], result.stderr
