"""One source of truth: the registries drive help, validation, docs and the API; the CLI and the Python
API are the same calls; shipped recipes travel in the wheel; the quick commands start without torch."""

import dataclasses
import importlib
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from safetensors import safe_open

import smu
from smu.cli.app import COMMANDS, main
from smu.core.errors import UsageError
from smu.core.options import declared, field_help, help_range
from smu.core.units import reported
from smu.io import schema
from smu.methods.pruning import METHODS as PRUNING
from smu.methods.unlearning import METHODS
from smu.workflows.recipes.catalog import shipped

ROOT = Path(__file__).parents[2]


def run_main(args, capsys):
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return e.value.code, out, err


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["recipes"], ["recipes", "quickstart"]])
def test_the_quick_commands_import_neither_torch_nor_torchvision(args):
    code = (
        "import sys\nfrom smu.cli.app import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_root_help_lists_every_command_with_the_summary_of_its_library_function(capsys):
    code, out, _ = run_main(["--help"], capsys)
    assert code == 0
    for cmd in COMMANDS:
        fn = getattr(importlib.import_module(cmd.module), cmd.build)(None).workflow
        assert cmd.summary == " ".join(fn.__doc__.split("\n\n")[0].split()), cmd.name
        assert cmd.name in out


def flat(text: str) -> str:
    """Help text without Rich's box drawing and line breaks, so wrapped sentences read whole again."""
    return " ".join(re.sub("[│╭╮╰╯─┃━]", " ", text).split())


def shown(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_has_its_own_help_with_its_own_texts_and_defaults(method, capsys):
    code, out, _ = run_main(["unlearn", "--method", method, "--help"], capsys)
    text = flat(out)
    spec = METHODS[method]
    assert code == 0 and f"{method}: {spec.summary}" in text
    assert (f"{method} options" in out) == bool(dataclasses.fields(spec.config))  # `none` has none
    docs, cfg, ranges = field_help(spec.config), spec.config(), declared(spec.config)
    for f in dataclasses.fields(spec.config):
        bounds = f" {help_range(ranges[f.name])}" if help_range(ranges[f.name]) else ""
        assert f"{docs[f.name].rstrip('.')} (default {shown(getattr(cfg, f.name))}){bounds}." in text, f.name
    mine = {f.name for f in dataclasses.fields(spec.config)}
    others = {f.name for s in METHODS.values() for f in dataclasses.fields(s.config)} - mine
    for name in others:
        assert f"--{name.replace('_', '-')} " not in text, name


def test_the_unfocused_help_gives_every_method_s_text_for_a_shared_option(capsys):
    _, out, _ = run_main(["unlearn", "--help"], capsys)
    text = flat(out)
    for method in ("ff", "iu", "l1-sparse"):
        cfg = METHODS[method].config
        bounds = help_range(declared(cfg)["alpha"])
        assert (
            f"{method}: {field_help(cfg)['alpha'].rstrip('.')} (default {cfg().alpha}) {bounds}." in text
        ), method
    for name, spec in METHODS.items():
        assert f"{name}: {spec.summary}" in text


def test_each_option_s_help_shows_its_declared_range(capsys):
    _, out, _ = run_main(["unlearn", "--method", "scrub", "--help"], capsys)
    text = flat(out)
    assert "--temperature <float> Distillation temperature T (default 4.0) [x>0]." in text
    assert "--gamma <float> Weight γ of the cross-entropy in the min-step (default 0.99) [x>=0]." in text
    assert "(default multistep) [multistep|cosine|constant]." in text
    _, out, _ = run_main(["unlearn", "--method", "salun", "--help"], capsys)
    assert "(default 0.5) [0<x<=1]." in flat(out)
    _, out, _ = run_main(["prune", "--help"], capsys)
    assert "Training epochs. [x>=1] [default: 182]" in flat(out)


def test_the_docs_tables_are_generated_from_the_registries_and_the_schema():
    import inspect

    from smu.cli.docs import FILES, main, rendered

    assert inspect.signature(main).parameters["root"].default == ROOT.resolve()  # python -m smu.cli.docs
    for name in FILES:
        text = (ROOT / name).read_text()
        assert text == rendered(text), f"{name} is out of date: run python -m smu.cli.docs"
    readme = (ROOT / "README.md").read_text()
    for method in METHODS:
        assert f"| `{method}` | {METHODS[method].summary} |" in readme
    for method in PRUNING:
        assert f"| `{method}` | {PRUNING[method].summary} |" in readme


def test_every_key_in_every_file_a_pipeline_writes_is_in_the_schema(pruned_cnn, tmp_path):
    from smu.cli.app import main as cli_main

    with pytest.raises(SystemExit):
        cli_main(
            [
                "unlearn",
                "--model",
                str(pruned_cnn / "round-1" / "model.safetensors"),
                "--forget",
                "class:3",
                "--method",
                "ft",
                "--epochs",
                "1",
                "--no-eval",
                "--out",
                str(tmp_path / "u"),
                "-q",
            ]
        )
    known = {str(k): k for k in schema.KEYS}
    files = [*pruned_cnn.rglob("*.safetensors"), *(tmp_path / "u").rglob("*.safetensors")]
    seen = set()
    for path in files:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata()
        kind = meta[schema.KIND]
        for key in meta:
            if key == "format":  # safetensors' own
                continue
            assert key in known, (path.name, key)
            assert kind in known[key].kinds, (path.name, key, kind)
            seen.add(key)
    assert {"smu.arch", "smu.mask", "smu.unlearn.method", "smu.spec", "smu.rewind"} <= seen


@pytest.mark.slow
def test_the_api_is_the_cli_same_options_same_result_same_bytes(tmp_path, capsys):
    args = dict(
        dataset="digits", arch="cnn", rate=0.5, epochs=2, rewind_epoch=1, lr=0.05, batch_size=64, seed=2
    )
    via_api = smu.prune(**args, out=tmp_path / "api")
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in args.items()]
    code, out, _ = run_main(["prune", *flags, "--out", tmp_path / "cli", "--json"], capsys)
    assert code == 0
    via_cli, shown = json.loads(out), reported(via_api)  # --json rounds what the API returns in full
    assert via_cli["sparsity"] == shown["sparsity"] and via_cli["test_acc"] == shown["test_acc"]
    assert via_cli["config"] == shown["config"]  # the configuration is never rounded
    assert via_api["test_acc"] == pytest.approx(via_cli["test_acc"], abs=0.005)
    for name in ("round-1/model.safetensors", "round-1/mask.safetensors", "dense/model.safetensors"):
        assert (tmp_path / "api" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name
    gone = smu.unlearn(model=via_api["model"], forget="class:3", method="ga", epochs=1, out=tmp_path / "u")
    assert set(gone) >= {"model", "metrics", "rte_s", "manifest"} and gone["config"]["epochs"] == 1
    measured = smu.evaluate(model=gone["model"], forget="class:3", reference=via_api["model"])
    assert measured["metrics"] == gone["metrics"] and measured["gap"]["avg"] >= 0
    with pytest.raises(UsageError, match="unknown option --lrr for --method ga \\(did you mean --lr\\?\\)"):
        smu.unlearn(model=via_api["model"], forget="class:3", method="ga", lrr=1, out=tmp_path / "x")
    with pytest.raises(UsageError, match="unknown option --epoch \\(did you mean --epochs\\?\\)"):
        smu.prune(dataset="digits", arch="cnn", epoch=3, out=tmp_path / "y")
    with pytest.raises(UsageError, match="--synflow-iterations does not apply to --method omp"):
        smu.prune(dataset="digits", arch="cnn", synflow_iterations=3, out=tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.slow
def test_the_readme_python_example_runs_as_written_and_forgets(tmp_path, monkeypatch, capsys):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Python API") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    names: dict = {}
    exec(compile(code, "README.md", "exec"), names)
    ga, retrained = names["ga"], names["retrained"]
    # The lesson it teaches: GA forgets the digit (UA 0 would teach the opposite) at a small cost, close
    # to retraining; and what it prints is what the reader is told to look at.
    assert ga["metrics"]["ua"] > 50 and ga["metrics"]["ra"] > 90 and ga["gap"]["avg"] < 10
    assert retrained["metrics"]["ua"] > 90
    printed = capsys.readouterr().out
    assert f"UA {ga['metrics']['ua']:5.1f}" in printed and f"{ga['gap']['avg']:.2f}" in printed


def measured(result, path=""):
    """(path, value) of every float a result reports, leaving out the configuration it echoes."""
    if isinstance(result, dict):
        for k, v in result.items():
            if k != "config":
                yield from measured(v, f"{path}.{k}")
    elif isinstance(result, list):
        for v in result:
            yield from measured(v, f"{path}[]")
    elif isinstance(result, float):
        yield path, result


def rounded_as_reported(path: str, value: float) -> bool:
    """Percentages to 2 decimals; times and throughputs to 3 significant digits (units kept)."""
    if path.endswith(("_s", "seconds", "images_per_second")):
        return float(f"{value:.3g}") == value or value == round(value)
    return round(value, 2) == value


def test_json_rounds_what_was_measured_in_percent_and_seconds_and_keeps_the_configuration_exact(
    tmp_path, capsys
):
    prune = ["prune", "--dataset", "digits", "--arch", "cnn", "--epochs", "2", "--rewind-epoch", "1"]
    pruned = json.loads(
        run_main([*prune, "--rate", "0.9", "--lr", "0.0137", "--out", tmp_path / "p", "--json"], capsys)[1]
    )
    dense = pruned["dense"]["model"]
    unlearn = ["unlearn", "--model", pruned["model"], "-f", "class:3", "--method", "l1-sparse"]
    options = ["--epochs", "1", "--lr", "0.013", "--alpha", "3e-8", "-r", dense, "--out", tmp_path / "u"]
    gone = json.loads(run_main([*unlearn, *options, "--json"], capsys)[1])
    evaluated = json.loads(run_main(["eval", "--model", gone["model"], "-f", "class:3", "--json"], capsys)[1])
    for result in (pruned, gone, evaluated):
        floats = dict(measured(result))
        assert len(floats) > 5 and {p: v for p, v in floats.items() if not rounded_as_reported(p, v)} == {}
    # sparsity in percent, as the accuracies are; the inputs as they were given
    assert pruned["sparsity"] == gone["sparsity"] == evaluated["sparsity"] == pytest.approx(90, abs=0.01)
    assert max(pruned["per_layer"].values()) > 90 and pruned["rounds"][0]["sparsity"] == pruned["sparsity"]
    assert pruned["config"]["train"]["lr"] == 0.0137 and pruned["config"]["prune"]["rate"] == 0.9
    assert gone["config"]["lr"] == 0.013 and gone["config"]["alpha"] == 3e-8
    manifest = json.loads((tmp_path / "u" / "manifest.json").read_text())
    assert manifest["result"]["metrics"] == gone["metrics"] and manifest["options"]["alpha"] == 3e-8


def test_reported_numbers_are_rounded_by_what_they_are_and_configuration_never():
    result = {
        "metrics": {"ua": 93.88889074325562, "mia": {"confidence": 12.345}, "forget_acc": 6.111111},
        "gap": {"ua": -0.0001, "avg": float("nan")},
        "sparsity": 89.99978366216684,
        "per_layer": {"net.0.weight": 11.111111111111116},
        "rte_s": 0.030885044999990896,
        "cost": {"wall_s": 5130.126, "rte_min": 0.0090757},
        "images_per_second": 2257.2477610556416,
        "forgetting_quality": 0.000244140625,
        "tow": {"mean": 0.2901930316445821, "n": 3},
        "loss": 1.234567,
        "rate": 0.123456,
        "config": {"lr": 0.013, "alpha": 3e-8, "ua": 1.23456},
        "trials": [{"value": 10.224528, "params": {"lr": 0.007257005721594277}, "seconds": 0.1792}],
        "name": "run-0.5",
        "size": 132,
    }
    assert reported(result) == {
        "metrics": {"ua": 93.89, "mia": {"confidence": 12.35}, "forget_acc": 6.11},
        "gap": {"ua": 0.0, "avg": None},
        "sparsity": 90.0,
        "per_layer": {"net.0.weight": 11.11},
        "rte_s": 0.0309,
        "cost": {"wall_s": 5130.0, "rte_min": 0.00908},
        "images_per_second": 2257.0,
        "forgetting_quality": 0.0002441,
        "tow": {"mean": 0.2902, "n": 3},
        "loss": 1.235,
        "rate": 0.123456,
        "config": {"lr": 0.013, "alpha": 3e-8, "ua": 1.23456},
        "trials": [{"value": 10.22, "params": {"lr": 0.007257005721594277}, "seconds": 0.179}],
        "name": "run-0.5",
        "size": 132,
    }
    assert str(reported(result)["gap"]["ua"]) == "0.0"  # not -0.0
    assert result["metrics"]["ua"] == 93.88889074325562  # the caller's numbers are left whole


@pytest.mark.parametrize(
    "args",
    [
        ["backdoor-cleanse", "--unlearn", "ft"],
        ["prune", "--from", "m.safetensors"],
        ["eval", "m.safetensors"],
    ],
)
def test_the_old_spellings_of_an_unreleased_version_are_gone(args, capsys):
    code, _, err = run_main(args, capsys)
    assert code == 2 and err.startswith("Error:") and err.count("\n") == 1


def test_the_api_has_real_signatures():
    import inspect

    import smu

    unlearn = inspect.signature(smu.unlearn).parameters
    assert [unlearn[n].default for n in ("mask", "forget_seed", "seed", "device")] == [None, 0, 0, "auto"]
    assert unlearn["model"].annotation == "str | Path" and unlearn["config"].default is None
    for name in ("prune", "evaluate", "audit", "tune", "backdoor_cleanse", "run"):
        params = inspect.signature(getattr(smu, name)).parameters
        assert all("Annotated" not in str(p.annotation) for p in params.values()), name


@pytest.mark.slow
def test_the_shipped_recipes_are_inside_the_wheel(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            tmp_path,
            ROOT,
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next(tmp_path.glob("smu-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for recipe in shipped():
        assert f"smu/workflows/recipes/shipped/{recipe.name}.yaml" in names, recipe.name
    assert {
        "smu/workflows/recipes/__init__.py",
        "smu/workflows/recipes/catalog.py",
        "smu/cli/docs.py",
    } <= names
    # pyproject.toml lists the packages by hand: every package folder must be in the wheel
    packages = {p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "smu").rglob("__init__.py")}
    assert {f"{p}/__init__.py" for p in packages} <= names


def test_a_checkout_reads_the_recipes_at_the_top_of_the_repository():
    assert sorted(str(p.relative_to(ROOT / "recipes")) for p in (ROOT / "recipes").rglob("*.yaml")) == sorted(
        f"{r.name}.yaml" for r in shipped()
    )


def test_recipes_lists_every_shipped_recipe_and_prints_one_that_loads(tmp_path, capsys):
    code, out, _ = run_main(["recipes", "--json"], capsys)
    listed = json.loads(out)["recipes"]
    assert code == 0 and [r["name"] for r in listed] == [r.name for r in shipped()]
    assert all(r["description"] and r["estimated_time"] for r in listed)
    code, out, _ = run_main(["recipes", "fashion-mnist/paper-table"], capsys)
    (tmp_path / "mine.yaml").write_text(out)
    from smu.workflows.recipes.config import load_recipe

    assert code == 0 and load_recipe(tmp_path / "mine.yaml").dataset == "fashion-mnist"
    code, _, err = run_main(["recipes", "fashion-mnist/paper-tabel"], capsys)
    assert code == 2 and "did you mean 'fashion-mnist/paper-table'" in err


def test_a_recipe_is_checked_whole_before_anything_is_trained(tmp_path, capsys):
    out = tmp_path / "never"
    code, stdout, err = run_main(
        ["run", "fashion-mnist/paper-table", "unlearn.ff.alpha=-1", "unlearn.iu.iu_samples=0", "--out", out],
        capsys,
    )
    assert code == 2 and stdout == "" and err.count("\n") == 1
    assert "unlearn.ff.alpha -1.0 must be > 0" in err and "unlearn.iu.iu_samples 0 must be >= 1" in err
    assert not out.exists()
