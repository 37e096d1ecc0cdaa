import pytest
import torch
from torch import nn

from smu.core.errors import UsageError
from smu.core.masks import Mask
from smu.execution.engine import TrainConfig
from smu.io import artifacts
from smu.methods.pruning import PruneConfig, PruneContext
from smu.methods.pruning.synflow import SynFlowConfig, synflow_mask
from smu.workflows.prune import run_prune

FAST = TrainConfig(epochs=3, lr=0.05, batch_size=128)


def test_omp_prunes_the_final_dense_weights_and_rewinds_to_the_epoch_k_weights_under_that_mask(
    tmp_path, digits, monkeypatch
):
    import smu.workflows.prune as pipeline

    seen = {}
    real_fit = pipeline.fit

    def spy(model, data, cfg, **kw):
        if kw.get("mask") is not None:  # the retraining after the prune: record its first step's weights

            def first_step(module, args):
                seen.setdefault("start", {k: v.clone() for k, v in module.state_dict().items()})

            hook = model.register_forward_pre_hook(first_step)
            seen["start_epoch"] = kw["start_epoch"]
            try:
                return real_fit(model, data, cfg, **kw)
            finally:
                hook.remove()
        return real_fit(model, data, cfg, **kw)

    monkeypatch.setattr(pipeline, "fit", spy)
    result = run_prune(
        digits, "cnn", FAST, PruneConfig("omp", rate=0.5, rewind_epoch=1), out=tmp_path, seed=0
    )
    dense = artifacts.load_model(tmp_path / "dense" / "model.safetensors").model
    rewind = artifacts.load_model(tmp_path / "dense" / "rewind-epoch-1.safetensors").model.state_dict()
    # The mask: the globally smallest |w| of the *trained* dense model's conv weights.
    ones = Mask.ones(dense, "conv")
    dense_w = dict(dense.named_parameters())
    expected = ones.prune_lowest({n: dense_w[n].abs() for n in ones.tensors}, round(0.5 * ones.counts()[1]))
    mask = artifacts.load_model(result["model"]).mask
    for name, m in expected.items():
        assert torch.equal(mask.tensors[name], m), name
    # Retraining starts at epoch 1 from the epoch-1 weights, pruned by that mask.
    assert seen["start_epoch"] == 1
    for k, v in seen["start"].items():
        m = expected.tensors.get(k)
        assert torch.equal(v, rewind[k] * m if m is not None else rewind[k]), k
    assert result["sparsity"] == pytest.approx(50, abs=1e-2)


def test_synflow_scores_a_hand_worked_network_and_rescores_between_iterations():
    """Three 1x1 convs 1 → 2 → 2 → 1 with weights a, B, c. On |θ| and an input of ones,
    R = Σ_ji |c_j||B_ji||a_i| sums four paths p_ji; a weight's score |θ ∂R/∂θ| is the sum of the paths
    through it. Here p00 = 4·0.5·3 = 6, p01 = 4·2·2 = 16, p10 = 3·0.5·3 = 4.5, p11 = 3·1.5·2 = 9, so
    a = (10.5, 25), B = (6, 16, 4.5, 9), c = (22, 13.5)."""
    net = nn.Sequential(*(nn.Conv2d(i, o, 1, bias=False) for i, o in ((1, 2), (2, 2), (2, 1))))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([3.0, -2.0]).view(2, 1, 1, 1))
        net[1].weight.copy_(torch.tensor([[0.5, -2.0], [-0.5, -1.5]]).view(2, 2, 1, 1))
        net[2].weight.copy_(torch.tensor([-4.0, 3.0]).view(1, 2, 1, 1))

    def pruned(iterations):
        ctx = PruneContext((1, 1, 1), torch.Generator().manual_seed(0), SynFlowConfig(iterations))
        mask = synflow_mask(net, Mask.ones(net, "conv"), 3, ctx)
        names = {"0.weight": ["a0", "a1"], "1.weight": ["B00", "B01", "B10", "B11"], "2.weight": ["c0", "c1"]}
        return {names[n][i] for n, m in mask.items() for i, v in enumerate(m.flatten().tolist()) if v == 0}

    # One shot: the three lowest scores, B10 (4.5), B00 (6) and B11 (9).
    assert pruned(1) == {"B10", "B00", "B11"}
    # Two iterations keep round(8 · (5/8)^½) = 6 first (B10 and B00 go). Re-scored, a0 has lost both of
    # its paths (score 0) and goes before B11 (9): SynFlow's guard against disconnected weights.
    assert pruned(2) == {"B10", "B00", "a0"}


@pytest.mark.parametrize("method", ["synflow", "random"])
def test_pruning_at_init_reaches_its_rate_and_keeps_the_model_sparse(tmp_path, digits, method):
    cfg = PruneConfig(method, rate=0.8, options=SynFlowConfig(10) if method == "synflow" else None)
    result = run_prune(digits, "cnn", FAST, cfg, out=tmp_path, seed=0)
    assert result["sparsity"] == pytest.approx(80, abs=1e-2) and "dense" not in result
    loaded = artifacts.load_model(result["model"])
    params = dict(loaded.model.named_parameters())
    for name, m in loaded.mask.items():
        assert bool((params[name][m == 0] == 0).all())


def test_synflow_keeps_every_layer_alive_at_high_sparsity(tmp_path, digits):
    result = run_prune(
        digits,
        "cnn",
        TrainConfig(epochs=1, batch_size=256),
        PruneConfig("synflow", rate=0.98, options=SynFlowConfig(20)),
        out=tmp_path,
        seed=0,
    )
    assert max(result["per_layer"].values()) < 100.0  # percent


def test_from_rejects_methods_that_prune_at_initialisation(tmp_path, digits):
    first = run_prune(digits, "cnn", FAST, PruneConfig("omp", rate=0.5, rewind_epoch=0), out=tmp_path / "a")
    start = artifacts.load_model(first["dense"]["model"])
    with pytest.raises(UsageError, match="--from does not apply"):
        run_prune(digits, "cnn", FAST, PruneConfig("random", rate=0.5), out=tmp_path / "b", start=start)


def test_bad_rates_and_rounds_are_usage_errors():
    for options, message in (
        (dict(rate=1.0), "--rate 1.0 must be in \\(0, 1\\)"),
        (dict(rate=0.0), "--rate 0.0 must be in \\(0, 1\\)"),
        (dict(method="omp", times=3), "--times 3 must be 1 for --method omp"),
        (dict(method="imp", times=0), "--times 0 must be >= 1"),
        (dict(rewind_epoch=10), "--rewind-epoch 10 must be below --epochs 10"),
        (dict(method="omq"), "unknown pruning method 'omq'"),
    ):
        with pytest.raises(UsageError, match=message):
            PruneConfig(**options).resolved(epochs=10)
