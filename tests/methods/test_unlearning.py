import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from conftest import quick
from torch import nn

from smu.core.errors import DivergedError, UsageError
from smu.core.masks import Mask
from smu.data import ImageSet, load_splits
from smu.data.forget import resolve_forget
from smu.execution.engine import TrainConfig, fit
from smu.methods.unlearning import METHODS, Context, UnlearnData, make_config
from smu.methods.unlearning.base import frozen_copy
from smu.methods.unlearning.fisher import fisher_diagonal, noise_variance
from smu.methods.unlearning.influence import gradient_sum, per_sample_gradients, woodfisher_direction
from smu.methods.unlearning.l1_sparse import L1SparseConfig, gamma, l1_norm
from smu.models import ARCHS, build_model
from smu.models.swin import SwinTransformer


def sparse_model(digits, arch: str, scope: str, epochs: int):
    """``arch`` trained on digits under a 90%-sparse magnitude mask of ``scope``."""
    torch.manual_seed(0)
    info = digits.info
    model = build_model(arch, in_channels=1, image_size=8, num_classes=10, mean=info.mean, std=info.std)
    mask = Mask.ones(model, scope)
    params = dict(model.named_parameters())
    mask = mask.prune_lowest({n: params[n].abs() for n in mask.tensors}, int(0.9 * mask.counts()[1]))
    fit(model, digits.train, TrainConfig(epochs=epochs, batch_size=64, lr=0.05), mask=mask)
    return model, mask


@pytest.fixture(scope="module")
def trained(digits):
    """A small cnn trained on digits, and a 90%-sparse mask of its convolutions."""
    return sparse_model(digits, "cnn", "conv", epochs=8)


@pytest.fixture(scope="module")
def trained_vit(digits):
    """The digits ViT, 90% of its attention and MLP weights pruned, briefly trained."""
    return sparse_model(digits, "vit", "linear", epochs=1)


@pytest.fixture(scope="module")
def few_digits():
    """400 training images of digits: enough for every method's code path on a slow model."""
    return load_splits("digits", seed=0, subset=400)


@pytest.fixture(scope="module")
def trained_swin(few_digits):
    """swin_t's code at a width a test can afford (registered as ``swin_tiny``), 90% of its linear
    weights pruned, briefly trained on digits resized to 32×32 inside the model."""
    digits = few_digits

    def tiny(channels: int, size: int, classes: int) -> nn.Module:
        return SwinTransformer(
            hidden_dim=8,
            layers=(2, 2, 2, 2),
            heads=(1, 1, 2, 2),
            channels=channels,
            num_classes=classes,
            head_dim=8,
        )

    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(ARCHS, "swin_tiny", dataclasses.replace(ARCHS["swin_t"], build=tiny))
        yield sparse_model(digits, "swin_tiny", "linear", epochs=1)


def loss_on(model, data: ImageSet) -> float:
    model.eval()
    with torch.no_grad():
        return F.cross_entropy(model(data.x.float() / 255), data.y).item()


def run(method, model, digits, spec="class:3", mask=None, arch="cnn", **overrides):
    data = UnlearnData.of(digits, resolve_forget(spec, digits))
    cfg = make_config(method, quick(method, **overrides))
    model = copy.deepcopy(model)
    original = frozen_copy(model) if "original" in METHODS[method].needs else None
    return METHODS[method].run(model, data, cfg, Context(arch, mask=mask, seed=0, original=original)), data


@pytest.mark.parametrize("arch", ["cnn", "vit", pytest.param("swin_tiny", marks=pytest.mark.slow)])
@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_keeps_a_sparse_model_exactly_as_sparse(method, arch, digits, request):
    fixture = {"cnn": "trained", "vit": "trained_vit", "swin_tiny": "trained_swin"}[arch]
    model, mask = request.getfixturevalue(fixture)
    data = request.getfixturevalue("few_digits") if arch == "swin_tiny" else digits
    out, _ = run(method, model, data, mask=mask, arch=arch)
    params = dict(out.named_parameters())
    for name, m in mask.items():
        assert bool((params[name][m == 0] == 0).all()), name
    assert all(bool(torch.isfinite(p).all()) for p in out.parameters())


def test_gradient_ascent_raises_the_forget_loss(digits, trained):
    model, _ = trained
    out, data = run("ga", model, digits, spec="random:10%", lr=5e-3)
    assert loss_on(out, data.forget) > 1.5 * loss_on(model, data.forget)


def test_fine_tuning_lowers_the_retain_loss(digits):
    torch.manual_seed(1)
    model = build_model("cnn", in_channels=1, image_size=8, num_classes=10, mean=[0.3], std=[0.4])
    fit(model, digits.train, TrainConfig(epochs=1, batch_size=64, lr=0.01))  # far from converged
    out, data = run("ft", model, digits, epochs=3)
    assert loss_on(out, data.retain) < loss_on(model, data.retain)


def test_retrain_never_sees_a_forget_sample(digits, trained, monkeypatch):
    import smu.execution.engine as engine

    seen = []
    real = engine.batches

    def spy(data, *args, **kwargs):
        for x, y in real(data, *args, **kwargs):
            seen.append(y.clone())
            yield x, y

    monkeypatch.setattr(engine, "batches", spy)
    run("retrain", trained[0], digits, spec="class:3")
    labels = torch.cat(seen)
    assert len(labels) > 0 and 3 not in labels.tolist()


def test_retrain_starts_from_a_fresh_initialisation_of_the_run_seed(digits, trained, monkeypatch):
    import smu.methods.unlearning.base as base

    starts = []
    real = base.fit

    def spy(model, *args, **kwargs):
        starts.append({k: v.clone() for k, v in model.state_dict().items()})
        return real(model, *args, **kwargs)

    monkeypatch.setattr(base, "fit", spy)
    model, mask = trained
    data = UnlearnData.of(digits, resolve_forget("class:3", digits))
    ctx = Context("cnn", mask=mask, seed=4)
    METHODS["retrain"].run(copy.deepcopy(model), data, make_config("retrain", quick("retrain")), ctx)
    torch.manual_seed(4)
    info = digits.info
    fresh = build_model("cnn", in_channels=1, image_size=8, num_classes=10, mean=info.mean, std=info.std)
    assert len(starts) == 1
    for k, v in fresh.state_dict().items():
        assert torch.equal(starts[0][k], v), k  # not the trained weights: a new model, seeded by the run


def test_l1_gamma_decays_linearly_to_zero_then_stays_off():
    cfg = L1SparseConfig(epochs=10, alpha=1e-3, no_l1_epochs=2)
    assert [round(gamma(cfg, t), 6) for t in range(10)] == [
        1e-3,
        8.75e-4,
        7.5e-4,
        6.25e-4,
        5e-4,
        3.75e-4,
        2.5e-4,
        1.25e-4,
        0.0,
        0.0,
    ]


def test_l1_sparse_ends_with_a_smaller_l1_norm_than_plain_fine_tuning(digits, trained):
    model, _ = trained
    ft, _ = run("ft", model, digits, epochs=3)
    l1, _ = run("l1-sparse", model, digits, epochs=3, alpha=5e-3)
    assert l1_norm(l1).item() < l1_norm(ft).item()


def slow_fisher(model, data: ImageSet, batch_size: int, mask=None):
    """The original way, in float64: one backward pass per class per batch. A mask is applied as the
    research code prunes, with torch's re-parametrisation: the Fisher is then that of ``weight_orig``."""
    from torch.nn.utils import prune

    model = copy.deepcopy(model).double().eval()
    modules = dict(model.named_modules())
    for name, m in (mask or {}).items():
        prune.custom_from_mask(modules[name.rsplit(".", 1)[0]], "weight", m.double())
    params = dict(model.named_parameters())
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    n_batches = 0
    for start in range(0, len(data), batch_size):
        x, y = data.x[start : start + batch_size].double() / 255, data.y[start : start + batch_size]
        out = model(x)
        prob = F.softmax(out, 1).detach()
        for c in range(out.shape[1]):
            grads = torch.autograd.grad(
                F.cross_entropy(out, torch.full_like(y, c)), list(params.values()), retain_graph=True
            )
            for (n, _), g in zip(params.items(), grads, strict=True):
                fisher[n] += prob[:, c].mean() * g.pow(2)
        n_batches += 1
    return {n: f / n_batches for n, f in fisher.items()}


def test_fast_fisher_equals_one_backward_per_class_on_fresh_random_inputs():
    torch.manual_seed(11)
    model = build_model("resnet20", in_channels=3, image_size=8, num_classes=7, mean=[0.5] * 3, std=[0.3] * 3)
    data = ImageSet(torch.randint(0, 256, (70, 3, 8, 8), dtype=torch.uint8), torch.randint(0, 7, (70,)))
    slow = slow_fisher(model, data, 32)
    for batched in (True, False):
        fast = fisher_diagonal(model, data, 32, batched=batched)
        for n in slow:
            # Entry by entry, relative: F spans many orders of magnitude within a tensor and FF's noise is
            # α/F, so a small entry matters as much as a large one. Only entries below a millionth of the
            # tensor's largest, where float32 gradients themselves lose digits, are compared absolutely.
            ref, got = slow[n], fast[n].double()
            big = ref > 1e-6 * ref.max()
            rel = (got[big] - ref[big]).abs() / ref[big]
            assert rel.max().item() < 1e-4, (n, batched, rel.max().item())
            assert (
                (got[~big] - ref[~big]).abs().max().item() <= 1e-8 * ref.max().item() if (~big).any() else 1
            )


def test_ffs_fisher_of_a_sparse_model_is_the_research_codes_through_torchs_pruning(digits, trained):
    # The research code prunes with torch's re-parametrisation: the Fisher it estimates is that of
    # weight_orig, whose gradient is 0 wherever weight = weight_orig · mask is pruned.
    model, mask = trained
    data = digits.train.subset(torch.arange(100))
    slow = {
        n.replace("weight_orig", "weight"): f
        for n, f in slow_fisher(model, data, 32, dict(mask.items())).items()
    }
    fast = mask.restrict(fisher_diagonal(copy.deepcopy(model), data, 32))
    for name in mask.tensors:
        assert bool((fast[name][mask.tensors[name] == 0] == 0).all()) and bool(
            (slow[name][mask.tensors[name] == 0] == 0).all()
        )
    for n in slow:
        torch.testing.assert_close(fast[n].double(), slow[n], rtol=1e-3, atol=1e-9 * slow[n].max().item())


def test_ff_noise_variance_follows_alpha_over_fisher():
    fisher = {
        "net.conv.weight": torch.tensor([[1e-1, 1e-3], [1e-2, 1e-1]]),
        "net.bn.weight": torch.tensor([1e-2, 1.0]),
        "net.fc.weight": torch.tensor([[1e-6, 1.0], [1.0, 1.0]]),
        "net.fc.bias": torch.tensor([1.0, 1.0]),
    }
    params = {k: torch.ones_like(v) for k, v in fisher.items()}
    mu, var = noise_variance(fisher, params, "net.fc", alpha=2.0, forget_class=1)
    assert var["net.conv.weight"][0].tolist() == pytest.approx([2.0 * (10 + 1000) / 2] * 2, rel=1e-5)
    assert var["net.bn.weight"].tolist() == pytest.approx([2.0 * 100 * 10, 2.0 * 1 * 10], rel=1e-5)
    # the classifier is clamped at 1e2 before α and ×10 after; the forgotten row is (0, 1e-4 × 10)
    assert var["net.fc.weight"][0].tolist() == pytest.approx([(2.0 * 100 + 2.0 * 1) / 2 * 10] * 2, rel=1e-5)
    assert var["net.fc.weight"][1].tolist() == pytest.approx([1e-3, 1e-3])
    assert mu["net.fc.weight"][1].tolist() == [0.0, 0.0] and mu["net.fc.bias"][1].item() == 0.0


@pytest.mark.slow
def test_ff_noise_has_the_predicted_spread(digits, trained):
    model, _ = trained
    out, data = run("ff", model, digits, spec="random:10%", alpha=1e-6)
    fisher = fisher_diagonal(copy.deepcopy(model), data.retain, 32)
    params = dict(model.named_parameters())
    _, var = noise_variance(fisher, params, "net.fc", 1e-6, None)
    name = max(params, key=lambda n: params[n].numel())  # the largest conv: 73,728 draws
    z = (dict(out.named_parameters())[name] - params[name]) / var[name].sqrt()
    assert abs(z.std().item() - 1.0) < 0.02 and abs(z.mean().item()) < 0.02


def test_per_sample_gradients_equal_a_batch_size_one_loop_on_fresh_random_inputs():
    torch.manual_seed(5)
    model = build_model("resnet20", in_channels=1, image_size=8, num_classes=10, mean=[0.5], std=[0.3]).eval()
    data = ImageSet(torch.randint(0, 256, (9, 1, 8, 8), dtype=torch.uint8), torch.randint(0, 10, (9,)))
    fast = [
        g
        for chunk in per_sample_gradients(model, data, 9, chunk=4)
        for g in [{n: t[i] for n, t in chunk.items()} for i in range(len(next(iter(chunk.values()))))]
    ]
    for i in range(9):
        loss = F.cross_entropy(model(data.x[i : i + 1].float() / 255), data.y[i : i + 1])
        slow = torch.autograd.grad(loss, list(model.parameters()))
        for (name, _), s in zip(model.named_parameters(), slow, strict=True):
            err = (fast[i][name] - s).norm() / s.norm().clamp_min(1e-12)
            assert err < 1e-4, (i, name)


def literal_woodfisher(grads: list[torch.Tensor], v: torch.Tensor, n: int) -> torch.Tensor:
    """The research code's recursion, vector by vector."""
    k, o = v.clone(), None
    for idx, g in enumerate(grads):
        if o is None:
            o = g.clone()
        else:
            t = torch.dot(o, g)
            k -= (torch.dot(k, g) / (n + t)) * o
            o -= (t / (n + t)) * o
        if idx > n:
            break
    return k


def flat_sample_gradients(model, data: ImageSet) -> list[torch.Tensor]:
    """Per-sample loss gradients the obvious way: a batch of one at a time, flattened."""
    grads = []
    for i in range(len(data)):
        loss = F.cross_entropy(model(data.x[i : i + 1].float() / 255), data.y[i : i + 1])
        grads.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(model.parameters()))]))
    return grads


@pytest.mark.parametrize("n_samples, chunk", [(5, 7), (12, 4), (30, 7), (1000, 7)])
def test_woodfisher_scalar_form_equals_the_literal_recursion_on_fresh_random_inputs(n_samples, chunk):
    """k − v is all the recursion contributes, so that is what is compared (v alone dominates ‖k‖). The
    cases stop inside the first chunk, across several chunk hand-offs, and after every sample."""
    torch.manual_seed(3)
    model = build_model("cnn", in_channels=1, image_size=8, num_classes=10, mean=[0.5], std=[0.3]).eval()
    data = ImageSet(torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8), torch.randint(0, 10, (40,)))
    names = [n for n, _ in model.named_parameters()]
    # v as IU builds it, from gradients of other samples; a random v is nearly orthogonal to every g_j.
    others = ImageSet(torch.randint(0, 256, (30, 1, 8, 8), dtype=torch.uint8), torch.randint(0, 10, (30,)))
    v = {n: g / 30 for n, g in gradient_sum(model, others, 16).items()}
    fast = woodfisher_direction(model, data, v, n_samples, chunk=chunk)
    flat_v = torch.cat([v[n].flatten() for n in names]).double()
    grads = [g.double() for g in flat_sample_gradients(model, data)]
    slow = literal_woodfisher(grads, flat_v, n_samples) - flat_v
    got = torch.cat([fast[n].flatten() for n in names]).double() - flat_v
    assert slow.norm() > 1e-3 * flat_v.norm()  # the recursion's term is large enough to be compared
    assert ((got - slow).norm() / slow.norm()).item() < 1e-4


def literal_influence_unlearning(model, data: UnlearnData, alpha: float, n: int, batch_size: int, mask=None):
    """The research code's ``Wfisher``, vector by vector: the forget and retain gradients summed from
    batch means × batch size, v weighted by the set sizes, the WoodFisher loop over batch-size-1 retain
    gradients stopping after index N + 1, and θ + α·k. A mask is applied as the research code prunes,
    with torch's re-parametrisation (weight = weight_orig · mask), so gradients are those of weight_orig."""
    from torch.nn.utils import prune

    model = copy.deepcopy(model).eval()
    modules = dict(model.named_modules())
    for name, m in (mask or {}).items():
        prune.custom_from_mask(modules[name.rsplit(".", 1)[0]], "weight", m)
    params = list(model.parameters())

    def summed_gradient(images: ImageSet) -> tuple[torch.Tensor, int]:
        total, count = torch.zeros(sum(p.numel() for p in params)), 0
        for start in range(0, len(images), batch_size):
            x, y = images.x[start : start + batch_size].float() / 255, images.y[start : start + batch_size]
            loss = F.cross_entropy(model(x), y)
            total += torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)]) * len(y)
            count += len(y)
        return total, count

    forget_grad, n_f = summed_gradient(data.forget)
    retain_grad, n_r = summed_gradient(data.retain)
    v = forget_grad / (n_f + n_r) - retain_grad * n_f / ((n_f + n_r) * n_r)
    k = literal_woodfisher(flat_sample_gradients(model, data.retain.subset(torch.arange(n + 2))), v, n)
    with torch.no_grad():
        start = 0
        for p in params:
            p += alpha * k[start : start + p.numel()].view(p.shape)
            start += p.numel()
    for name in mask or {}:
        prune.remove(modules[name.rsplit(".", 1)[0]], "weight")
    return model


@pytest.mark.parametrize("sparse", [False, True])
def test_influence_unlearning_takes_the_literal_step_of_the_research_code(digits, trained, sparse):
    model, mask = trained
    mask = mask if sparse else None
    data = UnlearnData.of(digits, resolve_forget("random:40", digits, seed=2))
    alpha = 5.0 if sparse else 0.5  # the sparse model's step is smaller
    cfg = make_config("iu", {"alpha": alpha, "iu_samples": 30, "batch_size": 100})
    fast = METHODS["iu"].run(copy.deepcopy(model), data, cfg, Context("cnn", mask=mask, seed=0))
    slow = literal_influence_unlearning(model, data, alpha, 30, 100, dict(mask.items()) if sparse else None)

    def flat(m):
        return torch.cat([t.detach().flatten() for _, t in sorted(m.named_parameters())])

    before = flat(model)
    step_fast, step_slow = flat(fast) - before, flat(slow) - before
    assert step_slow.norm() > 1e-4 * before.norm()  # a real step, not a rounding of θ
    assert ((step_fast - step_slow).norm() / step_slow.norm()).item() < 1e-4


def test_a_nan_in_gradient_ascent_stops_the_run_with_a_clear_message(digits, trained):
    with pytest.raises(DivergedError, match="ga diverged in epoch"):
        run("ga", trained[0], digits, lr=1e12, epochs=3)


def test_an_option_of_another_method_is_a_usage_error():
    with pytest.raises(UsageError, match="--alpha does not apply to --method ft"):
        make_config("ft", {"alpha": 0.1})
    with pytest.raises(UsageError, match="--epochs does not apply to --method ff"):
        make_config("ff", {"epochs": 3})
    assert make_config("ft", {}).epochs == 10 and make_config("retrain", {}).epochs == 160
    assert make_config("ga", {}).lr == 1e-4 and make_config("iu", {}).iu_samples == 1000
