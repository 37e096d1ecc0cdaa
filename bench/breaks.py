"""Deliberate breaks: each claim's tests must fail when the code behind the claim breaks.

Copies the checkout (the files git tracks and the untracked ones it does not ignore) into a scratch
folder once per break, makes that one break, runs only the tests meant to catch it, and prints
CAUGHT or MISSED. Nothing in the checkout changes. Run it after a refactor, with the environment the
tests use:

    python bench/breaks.py              # every break (about 2 minutes on 2 cores)
    python bench/breaks.py "IU"         # the breaks whose name contains IU

A break is (name, file, text, replacement, tests); the text must occur in the file, so a break that
no longer applies after a change says so instead of passing silently.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BREAKS = [
    (
        "IU returns the model unchanged",
        "smu/methods/unlearning/influence.py",
        '    """θ ← θ + α · H⁻¹ v, then the mask again."""\n',
        '    """θ ← θ + α · H⁻¹ v, then the mask again."""\n    return model\n',
        [
            "tests/methods/test_unlearning.py::test_influence_unlearning_takes_the_literal_step_of_the_research_code"
        ],
    ),
    (
        "resume ignores the checkpoint",
        "smu/execution/engine.py",
        "    if checkpoint is None:\n        return start_epoch\n",
        "    if True:\n        return start_epoch\n",
        [
            "tests/workflows/test_resume_and_determinism.py"
            "::test_every_training_method_resumes_from_its_checkpoint_to_the_same_bytes"
        ],
    ),
    (
        "writes not atomic",
        "smu/io/files.py",
        "    fd, tmp = tempfile.mkstemp(",
        "    path.write_bytes(data)\n    return\n    fd, tmp = tempfile.mkstemp(",
        ["tests/io/test_artifacts.py"],
    ),
    (
        "Avg. Gap over three metrics",
        "smu/evaluation/__init__.py",
        'GAP_METRICS = ("ua", "mia_efficacy", "ra", "ta")',
        'GAP_METRICS = ("ua", "mia_efficacy", "ra")',
        ["tests/methods/test_evaluation.py::test_gap_is_the_absolute_difference_and_avg_gap_their_mean"],
    ),
    (
        "auto prefers MPS to CUDA",
        "smu/execution/engine.py",
        '        if torch.cuda.is_available():\n            return torch.device("cuda")\n'
        '        if torch.backends.mps.is_available():\n            return torch.device("mps")\n',
        '        if torch.backends.mps.is_available():\n            return torch.device("mps")\n'
        '        if torch.cuda.is_available():\n            return torch.device("cuda")\n',
        [
            "tests/execution/test_engine.py"
            "::test_resolve_device_auto_prefers_cuda_then_mps_then_cpu_and_rejects_unknown_devices"
        ],
    ),
    (
        "a class name resolves to the next class",
        "smu/data/forget.py",
        "        return classes.index(name)\n",
        "        return (classes.index(name) + 1) % len(classes)\n",
        ["tests/data/test_forget.py::test_a_class_name_works_like_its_number"],
    ),
    (
        "BasicBlock downsample renamed",
        "smu/models/resnet.py",
        "self.downsample",
        "self.shortcut",
        ["tests/io/test_import_inspect.py"],
    ),
    (
        "the workflow does not re-mask after the method",
        "smu/workflows/unlearn.py",
        "    remask(method, model, loaded.mask)\n",
        "    pass\n",
        [
            "tests/methods/test_plugins.py::test_the_workflow_sets_revived_pruned_weights_back_to_0_with_one_warning"
        ],
    ),
    (
        "a pruning plug-in may take smu prune's option names",
        "smu/methods/pruning/base.py",
        "        taken = [f.name for f in dataclasses.fields(method.config) if f.name in RESERVED]\n",
        "        taken = []\n",
        [
            "tests/methods/test_plugins.py"
            "::test_a_pruning_plug_in_whose_option_takes_a_name_of_smu_prune_breaks_the_contract"
        ],
    ),
    (
        "--method X --help lists every method's options",
        "smu/cli/app.py",
        '            if given.get("help") and given.get("method"):',
        "            if False:",
        ["tests/cli/test_interface.py"],
    ),
]


def checkout_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return [f for f in listed.stdout.splitlines() if (ROOT / f).is_file()]


def main(chosen: list[str]) -> int:
    breaks = [b for b in BREAKS if not chosen or any(c in b[0] for c in chosen)]
    files, missed = checkout_files(), 0
    for name, file, text, replacement, tests in breaks:
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch)
            for f in files:
                (root / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / f, root / f)
            source = (root / file).read_text()
            if text not in source:
                print(f"STALE   {name}: {file} no longer holds the text to break", flush=True)
                missed += 1
                continue
            (root / file).write_text(source.replace(text, replacement))
            env = dict(os.environ, PYTHONPATH=str(root))  # the scratch copy before any installed smu
            run = [sys.executable, "-m", "pytest", "-q", "-x", "-n", "0", "-p", "no:cacheprovider", *tests]
            done = subprocess.run(run, cwd=root, env=env, capture_output=True, text=True)
        summary = next((line for line in reversed(done.stdout.splitlines()) if " in " in line), "")
        caught = done.returncode == 1  # 1: a test failed; anything else (an error, no tests) is no catch
        missed += not caught
        print(f"{'CAUGHT' if caught else 'MISSED'}  {name}: {summary}", flush=True)
    print(f"{len(breaks) - missed} of {len(breaks)} caught")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
