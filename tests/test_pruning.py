import pytest
import torch

from smu import artifacts
from smu.engine import TrainConfig
from smu.errors import UsageError
from smu.pruning import PruneConfig
from smu.pruning.pipeline import run_prune

FAST = TrainConfig(epochs=3, lr=0.05, batch_size=128)


def test_omp_rewinds_to_the_epoch_k_weights_under_the_mask(tmp_path, digits, monkeypatch):
    import smu.pruning.pipeline as pipeline

    seen = {}
    real_fit = pipeline.fit

    def spy(model, data, cfg, **kw):
        if kw.get("mask") is not None:  # the retraining after the prune: record where it starts
            kw["mask"].apply(model)  # as fit does first
            seen["start"] = {k: v.clone() for k, v in model.state_dict().items()}
            seen["mask"] = kw["mask"]
            seen["start_epoch"] = kw["start_epoch"]
        return real_fit(model, data, cfg, **kw)

    monkeypatch.setattr(pipeline, "fit", spy)
    result = run_prune(
        digits, "cnn", FAST, PruneConfig("omp", rate=0.5, rewind_epoch=1), out=tmp_path, seed=0
    )
    rewind = artifacts.load_model(tmp_path / "dense" / "rewind-epoch-1.safetensors").model.state_dict()
    assert seen["start_epoch"] == 1
    for k, v in seen["start"].items():
        m = seen["mask"].tensors.get(k)
        assert torch.equal(v, rewind[k] * m if m is not None else rewind[k]), k
    assert result["sparsity"] == pytest.approx(0.5, abs=1e-4)


@pytest.mark.parametrize("method", ["synflow", "random"])
def test_pruning_at_init_reaches_its_rate_and_keeps_the_model_sparse(tmp_path, digits, method):
    cfg = PruneConfig(method, rate=0.8, synflow_iterations=10)
    result = run_prune(digits, "cnn", FAST, cfg, out=tmp_path, seed=0)
    assert result["sparsity"] == pytest.approx(0.8, abs=1e-4) and "dense" not in result
    loaded = artifacts.load_model(result["model"])
    params = dict(loaded.model.named_parameters())
    for name, m in loaded.mask.items():
        assert bool((params[name][m == 0] == 0).all())


def test_synflow_keeps_every_layer_alive_at_high_sparsity(tmp_path, digits):
    result = run_prune(
        digits,
        "cnn",
        TrainConfig(epochs=1, batch_size=256),
        PruneConfig("synflow", rate=0.98, synflow_iterations=20),
        out=tmp_path,
        seed=0,
    )
    assert max(result["per_layer"].values()) < 1.0


def test_from_rejects_methods_that_prune_at_initialisation(tmp_path, digits):
    first = run_prune(digits, "cnn", FAST, PruneConfig("omp", rate=0.5, rewind_epoch=0), out=tmp_path / "a")
    start = artifacts.load_model(first["dense"]["model"])
    with pytest.raises(UsageError, match="--from does not apply"):
        run_prune(digits, "cnn", FAST, PruneConfig("random", rate=0.5), out=tmp_path / "b", start=start)


def test_bad_rates_and_rounds_are_usage_errors():
    for cfg in (
        PruneConfig(rate=1.0),
        PruneConfig(rate=0.0),
        PruneConfig("omp", times=3),
        PruneConfig("imp", times=0),
        PruneConfig(rewind_epoch=10),
    ):
        with pytest.raises(UsageError):
            cfg.resolved(epochs=10)
