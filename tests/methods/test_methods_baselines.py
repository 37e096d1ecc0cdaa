"""The baselines other frameworks ship (Bad Teacher, UNSIR, Amnesiac, LF-SSD, JiT), each against a slow
literal copy of its official loop (same weights, same batches, same random draws), and their properties on
sparse models.

The literal copies feed the network as the official code does: images normalised by the data's mean and
std, straight into the network inside smu's model (``model.net``), where smu feeds images in [0, 1] to the
model, which normalises them itself."""

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F

from smu.core.errors import UsageError
from smu.data import ImageSet
from smu.methods.unlearning import jit, make_config
from smu.methods.unlearning.amnesiac import wrong_labels
from smu.models import build_for
from tests.methods import test_methods_beyond as beyond
from tests.methods.test_methods_beyond import (
    SEED,
    assert_same_weights,
    epoch_generator,
    flat,
    literal_batches,
    smu_run,
)

setup, sparse = beyond.setup, beyond.sparse  # the same fixtures: a trained small cnn and its sparse twin


def run_generator():
    """``Context.generator()`` of the run: the one-off draws (the retain part, wrong labels, the noise)."""
    return torch.Generator().manual_seed(SEED + 2**32)


def normaliser(data):
    info = data.splits.info
    mean, std = torch.tensor(info.mean).view(1, -1, 1, 1), torch.tensor(info.std).view(1, -1, 1, 1)
    return lambda x: (x - mean) / std


def adam_step(opt, loss):
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_bad_teacher_distils_as_the_official_unlearner_loss(setup):
    model, data = setup
    options = {"epochs": 2, "batch_size": 16, "lr": 1e-3, "temperature": 2.0, "retain_fraction": 0.5}
    cfg = make_config("bad-teacher", options)
    fast, ctx = smu_run("bad-teacher", model, data, **options)
    # blindspot: random.sample of the retain set, then UnLearningData with label 1 for forget, 0 for retain
    chosen = torch.randperm(len(data.retain), generator=run_generator())[: int(0.5 * len(data.retain))]
    part = data.retain.subset(torch.sort(chosen).values)
    mixed = ImageSet.join([part, data.forget])
    mixed = mixed.with_labels(torch.cat([torch.zeros(len(part)), torch.ones(len(data.forget))]).long())
    torch.manual_seed(SEED)  # the run's seed draws the incompetent teacher
    incompetent = build_for("cnn", data.splits.info).eval()
    competent, student = copy.deepcopy(model).eval(), copy.deepcopy(model)
    opt = torch.optim.Adam(student.parameters(), lr=cfg.lr)
    t = cfg.temperature
    for epoch in range(cfg.epochs):
        student.train()
        for x, flag in literal_batches(mixed, cfg.batch_size, epoch_generator(epoch)):
            with torch.no_grad():
                full, unlearn = competent(x), incompetent(x)
            labels = flag.unsqueeze(1)
            overall = labels * F.softmax(unlearn / t, dim=1) + (1 - labels) * F.softmax(full / t, dim=1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # kl_div's "mean" warning: the official code's reduction
                loss = F.kl_div(F.log_softmax(student(x) / t, dim=1), overall, reduction="mean")
            adam_step(opt, loss)
    assert_same_weights(fast, student)
    assert (flat(fast) - flat(model)).norm() > 1e-3 * flat(model).norm()  # it did train
    for a, b in zip(ctx.original.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # the competent teacher is the original, untouched


def test_bad_teachers_incompetent_teacher_comes_from_its_seed(setup):
    model, data = setup
    a, _ = smu_run("bad-teacher", model, data, epochs=1, batch_size=32, teacher_seed=1)
    b, _ = smu_run("bad-teacher", model, data, epochs=1, batch_size=32, teacher_seed=1)
    c, _ = smu_run("bad-teacher", model, data, epochs=1, batch_size=32, teacher_seed=2)
    assert torch.equal(flat(a), flat(b)) and not torch.equal(flat(a), flat(c))


def test_amnesiac_draws_one_wrong_label_per_sample_and_trains_as_the_official_cycle(setup):
    model, data = setup
    y = torch.arange(10).repeat(2000)
    drawn = wrong_labels(y, 10, torch.Generator().manual_seed(0))
    assert not bool((drawn == y).any()) and set(drawn.tolist()) == set(range(10))
    counts = torch.bincount(drawn[y == 3], minlength=10).float()  # uniform over the 9 others
    assert counts[3] == 0 and (counts[counts > 0] / 2000 - 1 / 9).abs().max() < 0.03

    options = {"epochs": 2, "batch_size": 16, "lr": 1e-3}
    cfg = make_config("amnesiac", options)
    fast, _ = smu_run("amnesiac", model, data, **options)
    relabelled = data.forget.with_labels(wrong_labels(data.forget.y, 10, run_generator()))
    mixed = ImageSet.join([data.retain, relabelled])
    literal = copy.deepcopy(model)
    opt = torch.optim.Adam(literal.parameters(), lr=cfg.lr)
    for epoch in range(cfg.epochs):  # fit_one_unlearning_cycle
        literal.train()
        for x, target in literal_batches(mixed, cfg.batch_size, epoch_generator(epoch)):
            adam_step(opt, F.cross_entropy(literal(x), target))
    assert_same_weights(fast, literal)


def test_unsir_learns_the_noise_impairs_and_repairs_as_the_official_code(setup):
    model, data = setup
    options = {"batch_size": 16, "repair_batch_size": 32, "noise_images": 8, "noise_copies": 3}
    options |= {"noise_steps": 5, "samples_per_class": 6, "lr": 1e-3}
    fast, _ = smu_run("unsir", model, data, **options)
    normalise, forget_class = normaliser(data), data.forget_set.forget_class
    literal = copy.deepcopy(model)
    net = literal.net  # the network without smu's normalisation: it takes normalised images
    # UNSIR_noise_train: the model in train mode (its BatchNorm statistics follow the noise)
    noise = torch.randn(8, 1, 8, 8, generator=run_generator()).requires_grad_(True)
    noise_opt = torch.optim.Adam([noise], lr=0.1)
    net.train()
    for _ in range(5):
        labels = torch.zeros(8) + forget_class
        loss = -F.cross_entropy(net(noise), labels.long()) + 0.1 * torch.mean(torch.sum(noise**2, [1, 2, 3]))
        noise_opt.zero_grad()
        loss.backward()
        noise_opt.step()
    # classwise_train[i][:num_samples] for every class but the forgotten one
    y = data.retain.y
    keep = torch.cat([(y == c).nonzero().flatten()[:6] for c in range(10)]).sort().values
    samples = data.retain.subset(keep)
    images = torch.cat([normalise(samples.x.float() / 255), noise.detach().repeat(3, 1, 1, 1)])
    labels = torch.cat([samples.y, torch.full((24,), forget_class)])
    net.zero_grad(set_to_none=True)  # smu starts the impair step from zero gradients (its `differs`)
    for data_x, data_y, size in ((images, labels, 16), (normalise(samples.x.float() / 255), samples.y, 32)):
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)  # a new optimiser for each cycle
        net.train()
        perm = torch.randperm(len(data_y), generator=epoch_generator(0))
        for start in range(0, len(perm), size):
            idx = perm[start : start + size]
            if len(idx) == 1:
                break
            adam_step(opt, F.cross_entropy(net(data_x[idx]), data_y[idx]))
    assert_same_weights(fast, literal, tolerance=1e-4)
    assert (flat(fast) - flat(model)).norm() > 1e-3 * flat(model).norm()


def test_unsir_refuses_random_forgetting_in_one_line(digits, setup):
    from smu.data.forget import resolve_forget
    from smu.methods.unlearning import UnlearnData

    model, _ = setup
    data = UnlearnData.of(digits, resolve_forget("random:20", digits))
    with pytest.raises(UsageError, match="forgets a whole class") as e:
        smu_run("unsir", model, data)
    assert "\n" not in str(e.value)


def test_lf_ssd_dampens_by_the_official_loss_free_importance(setup):
    model, data = setup
    fast, _ = smu_run("lf-ssd", model, data, batch_size=32, selection=2.0, dampening=5.0)
    literal = copy.deepcopy(model).eval()

    def importance(images):  # lipschitz.py's calc_importance: |grad| of the batch mean of ‖f(x)‖²
        imp = {n: torch.zeros_like(p) for n, p in literal.named_parameters()}
        count = 0
        for start in range(0, len(images), 32):
            literal.zero_grad()
            out = literal(images.x[start : start + 32].float() / 255)
            torch.norm(out, p="fro", dim=1).pow(2).mean().backward()
            for n, p in literal.named_parameters():
                imp[n] += p.grad.clone().abs()
            count += 1
        return {n: i / count for n, i in imp.items()}

    by_class = [data.retain.subset(torch.nonzero(data.retain.y == c).flatten()) for c in range(10)]
    full = ImageSet.join([*by_class, data.forget])
    oimp, fimp = importance(full), importance(data.forget)
    selected = 0
    with torch.no_grad():
        for n, p in literal.named_parameters():  # SSD's modify_weight
            chosen = fimp[n] > oimp[n] * 2.0
            update = (oimp[n] * 5.0 / fimp[n]).clamp(max=1)
            p[chosen] = p[chosen] * update[chosen]
            selected += int(chosen.sum())
    assert selected > 0
    assert_same_weights(fast, literal, tolerance=1e-6)


def test_jit_smooths_the_model_as_the_official_lipschitz_loop(setup):
    model, data = setup
    options = {"batch_size": 16, "samples": 4, "noise": 0.3, "lr": 0.01}
    fast, _ = smu_run("jit", model, data, **options)
    normalise = normaliser(data)
    literal = copy.deepcopy(model)
    net = literal.net
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    gen = run_generator()
    net.train()
    opt.zero_grad()  # once, before the loop, as modify_weight does
    for start in range(0, len(data.forget), 16):  # forget_train_dl: in order
        image = normalise(data.forget.x[start : start + 16].float() / 255)
        out = net(image)
        loss = torch.tensor(0.0)
        for _ in range(4):
            low, high = image.max(), image.min()
            img2 = torch.clamp(image + torch.randn(image.size(), generator=gen) * 0.3, min=high, max=low)
            with torch.no_grad():
                out2 = net(img2)
            in_norm = torch.linalg.vector_norm(image.view(len(image), -1) - img2.view(len(img2), -1), dim=1)
            out_norm = torch.linalg.vector_norm(out - out2, dim=1)
            loss += (out_norm / in_norm).sum().abs()
        loss /= 4
        loss.backward()
        opt.step()  # no zero_grad: the gradients of the batches before add up
    assert_same_weights(fast, literal, tolerance=1e-4)
    assert (flat(fast) - flat(model)).norm() > 1e-4 * flat(model).norm()


def test_jit_without_accumulation_takes_each_batch_s_own_step(setup):
    """--no-accumulate is the paper's algorithm: each step moves along its own batch's gradient only."""
    model, data = setup
    options = {"batch_size": 16, "samples": 2, "noise": 0.3, "lr": 0.01}
    summed, _ = smu_run("jit", model, data, **options)
    own, _ = smu_run("jit", model, data, accumulate=False, **options)
    literal = copy.deepcopy(model)
    opt = torch.optim.SGD(literal.parameters(), lr=0.01)
    gen = run_generator()
    literal.train()
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (data.splits.info.mean, data.splits.info.std))
    for start in range(0, len(data.forget), 16):
        x = data.forget.x[start : start + 16].float() / 255
        opt.zero_grad()
        jit.smoothness(literal, x, make_config("jit", options), mean, std, gen).backward()
        opt.step()
    assert_same_weights(own, literal, tolerance=1e-6)
    assert (flat(own) - flat(summed)).norm() > 1e-3 * (flat(summed) - flat(model)).norm()


BASELINES = ["bad-teacher", "unsir", "amnesiac", "lf-ssd", "jit"]


@pytest.mark.parametrize("method", BASELINES)
def test_each_baseline_keeps_a_sparse_model_exactly_as_sparse_even_its_head(method, sparse, setup):
    model, mask = sparse
    _, data = setup
    options = {"epochs": 1, "batch_size": 16} if method in ("bad-teacher", "amnesiac", "unsir") else {}
    options |= {"noise_steps": 3, "noise_copies": 2} if method == "unsir" else {}
    options |= {"selection": 1.5} if method == "lf-ssd" else {}  # so that some weights are selected
    out, _ = smu_run(method, model, data, mask=mask, **options)
    params = dict(out.named_parameters())
    for name, m in mask.items():
        assert params[name].shape == m.shape and bool((params[name][m == 0] == 0).all()), name
    assert all(bool(torch.isfinite(p).all()) for p in out.parameters())
    assert not torch.equal(flat(out), flat(model))  # it did change the model
