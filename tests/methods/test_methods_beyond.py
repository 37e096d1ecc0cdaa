"""The methods that came after the paper, each against a slow literal implementation that follows its
official code's loop (same seeds, same batches), and their properties on sparse models."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from smu.core.masks import Mask
from smu.data import ImageSet
from smu.data.batches import Augment
from smu.data.forget import resolve_forget
from smu.execution.engine import TrainConfig, fit
from smu.methods.unlearning import METHODS, Context, UnlearnData, make_config
from smu.methods.unlearning.base import frozen_copy
from smu.methods.unlearning.salun import saliency_scores, top_fraction
from smu.models import build_model

SEED = 3


@pytest.fixture(scope="module")
def setup(digits):
    """A trained small cnn, and a small forget/retain split of digits without augmentation."""
    torch.manual_seed(0)
    info = digits.info
    model = build_model("cnn", in_channels=1, image_size=8, num_classes=10, mean=info.mean, std=info.std)
    fit(model, digits.train, TrainConfig(epochs=3, batch_size=64, lr=0.05))
    fs = resolve_forget("class:3", digits)
    forget, retain = fs.forget(digits).subset(torch.arange(40)), fs.retain(digits).subset(torch.arange(96))
    return model, UnlearnData(digits, fs, forget, retain, Augment())


def smu_run(method, model, data, mask=None, **options):
    model = copy.deepcopy(model)
    spec = METHODS[method]
    ctx = Context(
        "cnn", mask=mask, seed=SEED, original=frozen_copy(model) if "original" in spec.needs else None
    )
    torch.manual_seed(SEED)
    return spec.run(model, data, make_config(method, options), ctx), ctx


def augmentable(data):
    """The same sets, from a dataset that allows crops and flips."""
    return UnlearnData(data.splits, data.forget_set, data.forget, data.retain, Augment(crop_pad=2, flip=True))


def flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def assert_same_weights(a, b, tolerance=1e-5):
    diff = (flat(a) - flat(b)).norm() / flat(b).norm()
    print(f"relative difference {diff.item():.2e}")
    assert diff.item() < tolerance, diff.item()


def epoch_generator(epoch):
    return torch.Generator().manual_seed(SEED * 1_000_003 + epoch)


def literal_batches(data, size, gen):
    """A shuffled pass, the plain way (a lone last sample is left for the next epoch, as smu does)."""
    perm = torch.randperm(len(data), generator=gen)
    for start in range(0, len(data), size):
        idx = perm[start : start + size]
        if len(idx) == 1 and len(data) > 1:
            break
        yield data.x[idx].float() / 255, data.y[idx]


def sgd(model, cfg):
    return torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )


def step(opt, loss, model=None, keep=None, theta0=None):
    """One step, with the official code's `_apply_mask_to_grads` / `_restore_masked_params` for a mask."""
    opt.zero_grad()
    loss.backward()
    if keep is not None:
        for name, p in model.named_parameters():
            p.grad *= keep[name]
    opt.step()
    if keep is not None:
        with torch.no_grad():
            for name, p in model.named_parameters():
                k = keep[name].to(p.dtype)
                p.data.mul_(k).add_(theta0[name] * (1 - k))
                buf = opt.state.get(p, {}).get("momentum_buffer")
                if buf is not None:
                    buf.mul_(k)


def literal_rl(model, data, cfg, keep=None):
    """OPTML-Group's RL.py (CIFAR-10 branch): a forget pass with fresh random labels, then a retain pass."""
    model = copy.deepcopy(model)
    theta0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = sgd(model, cfg)
    for epoch in range(cfg.epochs):
        gen = epoch_generator(epoch)
        model.train()
        for x, y in literal_batches(data.forget, cfg.batch_size, gen):
            target = torch.randint(0, 10, y.shape, generator=gen)
            step(opt, F.cross_entropy(model(x), target), model, keep, theta0)
        for x, y in literal_batches(data.retain, cfg.batch_size, gen):
            step(opt, F.cross_entropy(model(x), y), model, keep, theta0)
    return model


def test_rl_takes_the_steps_of_the_official_loop(setup):
    model, data = setup
    options = {"epochs": 2, "batch_size": 16, "lr": 0.05}
    fast, _ = smu_run("rl", model, data, **options)
    assert_same_weights(fast, literal_rl(model, data, make_config("rl", options)))
    assert (flat(fast) - flat(model)).norm() > 1e-3 * flat(model).norm()  # it did train


def literal_augment(x, aug, gen):
    """RandomCrop(padding=p) then RandomHorizontalFlip, image by image, drawing smu's random numbers."""
    b, _, h, w = x.shape
    p = aug.crop_pad
    oy, ox = (
        torch.randint(0, 2 * p + 1, (b, 1), generator=gen),
        torch.randint(0, 2 * p + 1, (b, 1), generator=gen),
    )
    flips = torch.rand(b, generator=gen) < 0.5 if aug.flip else torch.zeros(b, dtype=torch.bool)
    out = []
    for i in range(b):
        image = F.pad(x[i], (p, p, p, p))[:, oy[i] : oy[i] + h, ox[i] : ox[i] + w]
        out.append(image.flip(-1) if flips[i] else image)
    return torch.stack(out)


def literal_saliency(model, data, batch_size, ratio, aug=None):
    """OPTML-Group's generate_mask.py: |Σ ∇(−CE)| over the batches of its forget loader (shuffled,
    the training transform), then ranks below int(N·ratio)."""
    model = copy.deepcopy(model).eval()
    grads = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    gen = torch.Generator().manual_seed(SEED + 2**32)
    order = torch.randperm(len(data.forget), generator=gen)
    for start in range(0, len(data.forget), batch_size):
        idx = order[start : start + batch_size]
        x, y = data.forget.x[idx], data.forget.y[idx]
        x = (literal_augment(x, aug, gen) if aug else x).float() / 255
        model.zero_grad()
        (-F.cross_entropy(model(x), y)).backward()
        for n, p in model.named_parameters():
            grads[n] += p.grad
    grads = {n: g.abs() for n, g in grads.items()}
    everything = -torch.cat([g.flatten() for g in grads.values()])
    ranks = torch.argsort(torch.argsort(everything))
    keep, start = {}, 0
    for n, g in grads.items():
        keep[n] = (ranks[start : start + g.numel()] < int(len(everything) * ratio)).view(g.shape).float()
        start += g.numel()
    return keep


def test_salun_has_the_official_saliency_mask_and_steps_and_freezes_the_rest_exactly(setup):
    model, data = setup
    options = {"epochs": 2, "batch_size": 16, "lr": 0.05, "saliency_ratio": 0.3}
    expected = literal_saliency(model, data, 16, 0.3)
    gen = torch.Generator().manual_seed(SEED + 2**32)
    got = top_fraction(saliency_scores(copy.deepcopy(model), data.forget, 16, None, gen), 0.3)
    for n, k in expected.items():
        assert torch.equal(got[n].float(), k), n
    aug = Augment(crop_pad=2, flip=True)  # the official transform: random crop and flip
    gen = torch.Generator().manual_seed(SEED + 2**32)
    got = top_fraction(saliency_scores(copy.deepcopy(model), data.forget, 16, aug, gen), 0.3)
    augmented = literal_saliency(model, data, 16, 0.3, aug)
    assert sum(int((augmented[n] != expected[n]).sum()) for n in expected) > 0  # augmentation mattered
    for n, k in augmented.items():
        assert torch.equal(got[n].float(), k), n
    fast, _ = smu_run("salun", model, data, **options)
    assert_same_weights(fast, literal_rl(model, data, make_config("salun", options), keep=expected))
    before, after = dict(model.named_parameters()), dict(fast.named_parameters())
    for n, k in expected.items():
        assert torch.equal(after[n][k == 0], before[n][k == 0]), n  # bit-identical, despite weight decay
        assert not torch.equal(after[n][k == 1], before[n][k == 1]) or (k == 1).sum() == 0, n


def distill_kl(student, teacher, t):
    """SCRUB's DistillKL: kl_div(log p_s, p_t, sum) · T² / batch."""
    return (
        F.kl_div(F.log_softmax(student / t, 1), F.softmax(teacher / t, 1), reduction="sum")
        * t**2
        / len(student)
    )


def test_scrub_takes_the_steps_of_the_official_loop_and_leaves_its_teacher_alone(setup):
    model, data = setup
    options = {
        "epochs": 3,
        "max_steps": 2,
        "batch_size": 32,
        "forget_batch_size": 16,
        "lr": 0.01,
        "alpha": 0.5,
    }
    cfg = make_config("scrub", options)
    # With smu's defaults on data that allows crops and flips (as CIFAR's does), the batches are the
    # official loaders', which do not augment: the literal loop below feeds plain images.
    fast, ctx = smu_run("scrub", model, augmentable(data), **options)
    teacher, student = copy.deepcopy(model).eval(), copy.deepcopy(model)
    opt = sgd(student, cfg)
    for epoch in range(1, cfg.epochs + 1):  # train_distill, as the notebook's loop calls it
        gen = epoch_generator(epoch - 1)
        student.train()
        if epoch <= cfg.max_steps:
            for x, _ in literal_batches(data.forget, cfg.forget_batch_size, gen):
                with torch.no_grad():
                    logit_t = teacher(x)
                step(opt, -distill_kl(student(x), logit_t, cfg.temperature))
        for x, y in literal_batches(data.retain, cfg.batch_size, gen):
            with torch.no_grad():
                logit_t = teacher(x)
            logit_s = student(x)
            step(
                opt,
                cfg.gamma * F.cross_entropy(logit_s, y)
                + cfg.alpha * distill_kl(logit_s, logit_t, cfg.temperature),
            )
    assert_same_weights(fast, student)
    for (n, a), b in zip(ctx.original.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b), n  # the teacher is the original, untouched


def test_neggrad_plus_takes_the_steps_of_the_official_loop(setup):
    from itertools import cycle

    model, data = setup
    options = {"epochs": 2, "batch_size": 16, "forget_batch_size": 8, "beta": 0.9}
    cfg = make_config("neggrad+", options)
    fast, _ = smu_run("neggrad+", model, augmentable(data), **options)
    literal = copy.deepcopy(model)
    opt = sgd(literal, cfg)
    for epoch in range(cfg.epochs):  # train_negrad: zip(retain, cycle(forget))
        gen = epoch_generator(epoch)
        literal.train()
        retain = literal_batches(data.retain, cfg.batch_size, gen)
        for (x, y), (fx, fy) in zip(retain, cycle(literal_batches(data.forget, cfg.forget_batch_size, gen))):
            step(
                opt,
                cfg.beta * F.cross_entropy(literal(x), y) - (1 - cfg.beta) * F.cross_entropy(literal(fx), fy),
            )
    assert_same_weights(fast, literal)
    assert len(data.retain) // 16 > len(data.forget) // 8  # the forget batches did cycle


def test_ssd_selects_and_dampens_as_the_official_code_and_never_grows_a_weight(setup):
    model, data = setup
    # λ > α, so the cap at 1 matters: some selected weights would otherwise grow
    fast, _ = smu_run("ssd", model, data, batch_size=32, selection=2.0, dampening=5.0)
    literal = copy.deepcopy(model).eval()

    def importance(images):  # ParameterPerturber.calc_importance
        imp = {n: torch.zeros_like(p) for n, p in literal.named_parameters()}
        batches = 0
        for start in range(0, len(images), 32):
            literal.zero_grad()
            x, y = images.x[start : start + 32].float() / 255, images.y[start : start + 32]
            F.cross_entropy(literal(x), y).backward()
            for n, p in literal.named_parameters():
                imp[n] += p.grad.clone().pow(2)
            batches += 1
        return {n: i / batches for n, i in imp.items()}

    # forget_full_class_main.py: the retain set built class by class, then the forgotten class
    retain = [data.retain.subset(torch.nonzero(data.retain.y == c).flatten()) for c in range(10)]
    full = ImageSet(
        torch.cat([r.x for r in retain] + [data.forget.x]), torch.cat([r.y for r in retain] + [data.forget.y])
    )
    oimp, fimp = importance(full), importance(data.forget)
    before, after = dict(model.named_parameters()), dict(fast.named_parameters())
    selected = 0
    with torch.no_grad():
        for n, p in literal.named_parameters():  # modify_weight, lower bound 1, exponent 1
            locations = torch.where(fimp[n] > oimp[n] * 2.0)
            update = (oimp[n] * 5.0 / fimp[n])[locations]
            update[update > 1] = 1
            p[locations] = p[locations] * update
            chosen = torch.zeros_like(p, dtype=torch.bool)
            chosen[locations] = True
            assert torch.equal(after[n][~chosen], before[n][~chosen]), n  # only the selected change
            assert bool((after[n].abs() <= before[n].abs()).all()), n  # and none grows
            selected += int(chosen.sum())
    assert selected > 0
    assert_same_weights(fast, literal, tolerance=1e-6)


def fgsm_label(model, x, y, bound):
    """boundary_sh.py's FGSM_perturb and argmax, as written there."""
    x_adv = x.detach().clone().requires_grad_(True)
    F.cross_entropy(model(x_adv), y).backward()
    x_adv = torch.round(torch.clamp(x_adv + x_adv.grad.sign() * bound, 0.0, 1.0) * 255) / 255
    return model(x_adv.detach()).argmax(1)


def test_boundary_shrink_takes_the_steps_of_the_official_loop(setup):
    model, data = setup
    options = {"epochs": 2, "batch_size": 16, "lr": 0.05}
    cfg = make_config("boundary-shrink", options)
    fast, _ = smu_run("boundary-shrink", model, data, **options)
    test_model, literal = copy.deepcopy(model).eval(), copy.deepcopy(model)
    opt = sgd(literal, cfg)
    for epoch in range(cfg.epochs):
        gen = epoch_generator(epoch)
        literal.train()
        for x, y in literal_batches(data.forget, cfg.batch_size, gen):
            adv_label = fgsm_label(test_model, x, y, 0.1)
            step(opt, F.cross_entropy(literal(x), adv_label))
    assert_same_weights(fast, literal)


def test_boundary_expand_trains_towards_a_shadow_class_and_removes_it(setup):
    model, data = setup
    options = {"epochs": 2, "batch_size": 16, "lr": 0.05}
    cfg = make_config("boundary-expand", options)
    fast, _ = smu_run("boundary-expand", model, data, **options)
    literal = copy.deepcopy(model)
    torch.manual_seed(SEED)  # boundary_ex.py's expand_model: a new Linear, the old rows copied
    wide = nn.Linear(literal.net.fc.in_features, 11)
    with torch.no_grad():
        wide.weight[:-1], wide.bias[:-1] = literal.net.fc.weight, literal.net.fc.bias
    literal.net.fc = wide
    opt = sgd(literal, cfg)
    for epoch in range(cfg.epochs):
        gen = epoch_generator(epoch)
        literal.train()
        for x, y in literal_batches(data.forget, cfg.batch_size, gen):
            step(opt, F.cross_entropy(literal(x), torch.full_like(y, 10)))
    assert fast.net.fc.out_features == 10 and fast(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    narrow = dict(literal.named_parameters()) | {
        "net.fc.weight": literal.net.fc.weight[:10],
        "net.fc.bias": literal.net.fc.bias[:10],
    }
    for n, p in fast.named_parameters():
        assert ((p - narrow[n]).norm() / narrow[n].norm()).item() < 1e-5, n


@pytest.fixture(scope="module")
def sparse(digits, setup):
    """The trained model pruned to 90% of all weights (conv and linear), its mask applied."""
    model, _ = setup
    model = copy.deepcopy(model)
    mask = Mask.ones(model, "all")
    params = dict(model.named_parameters())
    mask = mask.prune_lowest({n: params[n].abs() for n in mask.tensors}, int(0.9 * mask.counts()[1]))
    mask.apply(model)
    return model, mask


NEW = ["rl", "salun", "scrub", "neggrad+", "ssd", "boundary-shrink", "boundary-expand"]


@pytest.mark.parametrize("method", NEW)
def test_each_new_method_keeps_a_sparse_model_exactly_as_sparse_even_its_head(method, sparse, setup):
    model, mask = sparse
    _, data = setup
    options = {} if method == "ssd" else {"epochs": 1, "batch_size": 16}
    options |= {"forget_batch_size": 8} if method in ("scrub", "neggrad+") else {}
    out, _ = smu_run(method, model, data, mask=mask, **options)
    params = dict(out.named_parameters())
    for name, m in mask.items():
        assert params[name].shape == m.shape and bool((params[name][m == 0] == 0).all()), name
    assert all(bool(torch.isfinite(p).all()) for p in out.parameters())
