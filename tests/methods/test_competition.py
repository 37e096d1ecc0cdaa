"""A function with the NeurIPS 2023 competition's interface as a method
(smu/methods/unlearning/competition.py): what it is handed, how a spec is resolved (and when never),
provenance, the time limit, and the places beyond `smu unlearn` where a method runs. The command
line's contract: tests/cli/test_competition_cli.py."""

import contextlib
import json
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import smu
from safetensors import safe_open
from torch.utils.data import DataLoader

import smu as api
from smu.core.timelimit import TimeLimitExceeded, time_limit
from smu.core.usercode import UserCodeError
from smu.data import ImageSet
from smu.data.batches import Augment
from smu.data.forget import resolve_forget
from smu.io import artifacts
from smu.methods.unlearning import METHODS, folder_name
from smu.methods.unlearning.competition import CompetitionConfig, loader
from smu.workflows.unlearn import run_unlearn

HERE = Path(__file__).parent
SOLUTIONS = HERE / "competition_solutions.py"
BROKEN = HERE / "competition_broken.py"


def header(path):
    with safe_open(str(path), "pt") as f:
        return f.metadata()


def test_the_function_gets_a_copy_in_train_mode_and_dataloaders_of_the_runs_splits(pruned_cnn, tmp_path):
    import competition_broken  # tests/methods is on sys.path: the python: form imports it as Python does

    model = pruned_cnn / "round-1" / "model.safetensors"
    api.unlearn(
        model, "class:3", "python:competition_broken:inspect_loaders", no_eval=True, out=tmp_path / "u"
    )
    seen = competition_broken.SEEN
    splits = api.splits_of(artifacts.load_model(model))
    forget = resolve_forget("class:3", splits)
    retain, forgotten, val = seen["loaders"]
    assert seen["training"] and all(isinstance(d, DataLoader) for d in seen["loaders"])
    assert [d.batch_size for d in seen["loaders"]] == [64, 64, 64]
    sizes = [len(forget.retain(splits)), len(forget.forget(splits)), len(splits.val)]
    assert [len(d.dataset) for d in seen["loaders"]] == sizes
    for batches, size in zip(seen["batches"], sizes, strict=True):
        assert sum(len(y) for _, y in batches) == size  # the last partial batch is kept
        x, y = batches[0]
        assert x.shape == (64, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
        assert float(x.min()) >= 0 and float(x.max()) <= 1 and x.device.type == "cpu"
    assert all((y == 3).all() for _, y in seen["batches"][1])
    val_labels = torch.cat([y for _, y in seen["batches"][2]])
    assert torch.equal(val_labels, splits.val.y)  # the validation split, in order
    retain_labels = torch.cat([y for _, y in seen["batches"][0]])
    assert not torch.equal(retain_labels, forget.retain(splits).y)  # shuffled
    assert torch.equal(retain_labels.sort().values, forget.retain(splits).y.sort().values)
    rewrapped = next(iter(DataLoader(retain.dataset, batch_size=10)))  # as some solutions do
    assert rewrapped[0].shape == (10, 1, 8, 8) and rewrapped[1].shape == (10,)
    first_draw = seen["torch_draw"]
    api.unlearn(
        model, "class:3", "python:competition_broken:inspect_loaders", no_eval=True, out=tmp_path / "v"
    )
    assert torch.equal(seen["torch_draw"], first_draw)  # torch's generator seeded before the call
    assert torch.equal(torch.cat([y for _, y in seen["batches"][0]]), retain_labels)  # the same order


def test_the_loaders_augment_only_when_asked_and_draw_from_the_seed():
    images = ImageSet(torch.randint(0, 255, (100, 3, 8, 8), dtype=torch.uint8), torch.arange(100))
    aug = Augment(crop_pad=2, flip=True)

    def first(seed, augment, shuffle=True):
        return next(iter(loader(images, CompetitionConfig(augment=augment), seed, 0, shuffle, aug)))

    assert torch.equal(first(1, False, shuffle=False)[0], images.x[:64].float() / 255)
    plain, cropped = first(1, False), first(1, True)
    assert torch.equal(plain[0], images.x[plain[1]].float() / 255)
    assert torch.equal(plain[1], cropped[1]) and not torch.equal(plain[0], cropped[0])  # same order, cropped
    assert torch.equal(first(1, True)[0], cropped[0]) and not torch.equal(first(2, True)[1], cropped[1])


def test_a_failing_function_leaves_the_callers_model_untouched(pruned_cnn, tmp_path):
    loaded = artifacts.load_model(pruned_cnn / "round-1" / "model.safetensors")
    splits = api.splits_of(loaded)
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    for name, message in (
        ("raises", "raised ValueError: the forget set is too small"),
        ("eleven_classes", "11"),
    ):
        with pytest.raises(UserCodeError, match=message) as e:
            run_unlearn(
                loaded,
                splits,
                resolve_forget("class:3", splits),
                f"{BROKEN}:{name}",
                CompetitionConfig(),
                out=tmp_path / name,
                evaluate=False,
            )
        assert "\n" not in str(e.value)
        assert all(torch.equal(v, before[k]) for k, v in loaded.model.state_dict().items())
        assert not (tmp_path / name / "model.safetensors").exists()


def test_a_spec_is_resolved_only_where_a_method_is_looked_up_by_what_a_user_gave():
    spec = f"{SOLUTIONS}:reinit_and_finetune"
    assert spec not in METHODS and METHODS.get(spec) is None and all(":" not in name for name in METHODS)
    method = METHODS.get_spec(spec)
    assert method.name == spec and method.config is CompetitionConfig
    assert method.code["sha256"] == __import__("hashlib").sha256(SOLUTIONS.read_bytes()).hexdigest()
    assert folder_name("tests/methods/x.py:fn") == "tests-methods-x.py-fn" and folder_name("ft") == "ft"
    assert len(folder_name("/" + "deep/" * 40 + "x.py:fn")) <= 80


def test_a_function_named_in_a_models_header_is_never_loaded(pruned_cnn, tmp_path):
    marker = tmp_path / "imported.txt"
    code = tmp_path / "marks.py"
    code.write_text(
        f"from pathlib import Path\n"
        f"with open({str(marker)!r}, 'a') as f:\n    f.write('imported\\n')\n\n"
        "def unlearning(net, retain_loader, forget_loader, val_loader):\n    return net\n"
    )
    made = api.unlearn(
        pruned_cnn / "round-1" / "model.safetensors",
        "class:3",
        f"{code}:unlearning",
        no_eval=True,
        out=tmp_path / "u",
    )
    assert header(made["model"])["smu.unlearn.method"] == f"{code}:unlearning"
    assert marker.read_text().count("imported") == 1
    for args in (("inspect", made["model"]), ("eval", "--model", made["model"], "--forget", "class:3")):
        assert smu(*args).exit_code == 0
    again = smu(
        "unlearn",
        "--model",
        made["model"],
        "--forget",
        "class:3",
        "--method",
        "none",
        "--no-eval",
        "--out",
        tmp_path / "n",
    )
    assert again.exit_code == 0, again.output
    assert marker.read_text().count("imported") == 1


def test_the_model_records_the_spec_and_the_sha256_of_the_code_that_ran(pruned_cnn, tmp_path):
    code = tmp_path / "solution.py"
    code.write_text(SOLUTIONS.read_text())
    model = pruned_cnn / "round-1" / "model.safetensors"
    spec = f"{code}:neggrad_then_finetune"
    shas = []
    for run in ("a", "b"):
        result = api.unlearn(model, "class:3", spec, no_eval=True, out=tmp_path / run, batch_size=128)
        meta = header(result["model"])
        config = json.loads(meta["smu.unlearn.config"])
        assert meta["smu.unlearn.method"] == spec and result["method"] == spec
        assert config == {
            "augment": False,
            "batch_size": 128,
            "timeout": None,
            "code_sha256": config["code_sha256"],
        }
        assert result["code"] == {"spec": spec, "file": str(code.resolve()), "sha256": config["code_sha256"]}
        shas.append(config["code_sha256"])
        code.write_text(code.read_text().replace("ascent_steps=5", "ascent_steps=2"))
    assert shas[0] != shas[1]


def test_time_limit_stops_a_python_loop_on_any_thread_and_nothing_after():
    def spin():
        with time_limit(0.2):
            while True:
                with contextlib.suppress(Exception):  # a broad except must not keep the stop out
                    sum(range(100))

    start = time.perf_counter()
    with pytest.raises(TimeLimitExceeded):
        spin()
    assert time.perf_counter() - start < 5
    caught = []

    def in_thread():
        try:
            spin()
        except TimeLimitExceeded:
            caught.append(True)

    worker = threading.Thread(target=in_thread)
    worker.start()
    worker.join(10)
    assert caught == [True]
    with time_limit(0.1) as expired:
        pass
    time.sleep(0.3)  # the watchdog is cancelled: nothing is raised here
    assert not expired()


def test_tune_refuses_a_function_in_one_line(pruned_cnn, tmp_path):
    model = pruned_cnn / "round-1" / "model.safetensors"
    result = smu(
        "tune",
        "--model",
        model,
        "--forget",
        "class:3",
        "--method",
        f"{SOLUTIONS}:reinit_and_finetune",
        "--out",
        tmp_path / "t",
    )
    assert result.exit_code == 2 and "declares no search space" in result.stderr
    assert result.stderr.count("\n") == 1 and not (tmp_path / "t").exists()


RECIPE = """
kind: unlearn
dataset: digits
arch: cnn
train: {{epochs: 2, lr: 0.05, batch_size: 64}}
prune: {{rates: [], rewind_epoch: 1}}
scenarios: ["class:3"]
unlearn:
  retrain: {{epochs: 2, lr: 0.05, batch_size: 64}}
  {spec}: {{batch_size: 32}}
"""


def test_a_recipe_names_a_function_as_a_key_under_unlearn(tmp_path):
    spec = f"{SOLUTIONS}:neggrad_then_finetune"
    (tmp_path / "r.yaml").write_text(RECIPE.format(spec=spec))
    result = smu("run", tmp_path / "r.yaml", "--dry-run", "--json", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    steps = json.loads(result.stdout)["steps"]
    assert any(folder_name(spec) in json.dumps(step) for step in steps)
    (tmp_path / "bad.yaml").write_text(RECIPE.format(spec=f"{tmp_path}/missing.py:fn"))
    bad = smu("run", tmp_path / "bad.yaml", "--dry-run")
    assert bad.exit_code == 2 and "no file" in bad.stderr and bad.stderr.count("\n") == 1


@pytest.mark.slow
def test_a_recipe_runs_a_function_beside_retrain(tmp_path):
    spec = f"{SOLUTIONS}:neggrad_then_finetune"
    (tmp_path / "r.yaml").write_text(RECIPE.format(spec=spec))
    result = smu("run", tmp_path / "r.yaml", "--json", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert (
        tmp_path / "o" / "seed-0" / "class-3" / "dense" / folder_name(spec) / "model.safetensors"
    ).is_file()
    assert spec in (tmp_path / "o" / "report.md").read_text()


@pytest.mark.slow
def test_audit_judges_a_function(pruned_cnn, tmp_path):
    spec = f"{SOLUTIONS}:neggrad_then_finetune"
    args = ["--forget", "class:3:20", "--models", "3", "--retrain-epochs", "2", "--retrain-batch-size", "64"]
    result = smu(
        "audit",
        "--model",
        pruned_cnn / "round-1" / "model.safetensors",
        *args,
        "--method",
        spec,
        "--out",
        tmp_path / "a",
        "--json",
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["method"] == spec and out["models"] == 3 and 0 <= out["forgetting_quality"] <= 1
    folders = {p.name for p in (tmp_path / "a").iterdir()}
    assert folders == {folder_name(spec), "forget.safetensors", "reference"}


@pytest.mark.slow
def test_backdoor_cleanse_runs_a_function(pruned_cnn, tmp_path):
    spec = f"{SOLUTIONS}:reinit_and_finetune"
    result = smu(
        "backdoor-cleanse",
        "--model",
        pruned_cnn / "round-1" / "model.safetensors",
        "--method",
        spec,
        "--unlearn-batch-size",
        "32",
        "--out",
        tmp_path / "b",
        "--json",
    )
    assert result.exit_code == 0, result.output
    (cleansed,) = json.loads(result.stdout)["results"]
    assert cleansed["method"] == spec and cleansed["revived"] > 0
    assert header(cleansed["model_after"])["smu.unlearn.method"] == spec


def test_a_plug_in_may_not_take_a_name_with_a_colon():
    from smu.methods.unlearning import UnlearnMethod

    colon = UnlearnMethod("mine:fast", "a plug-in", CompetitionConfig, lambda *a: None)
    assert "holds a colon" in METHODS.declaration_problems(colon)[0]
