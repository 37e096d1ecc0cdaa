import contextlib

import pytest
import torch
import torch.nn.functional as F

from smu.core.errors import DivergedError, SmuError, UnknownNameError, UsageError
from smu.data import ImageSet
from smu.data.batches import Augment, augment, batches
from smu.execution.engine import TrainConfig, accuracy, fast_layout, fit, lr_at, resolve_device, runtime


def test_multistep_schedule_multiplies_by_a_tenth_at_each_milestone():
    cfg = TrainConfig(epochs=182, lr=0.1, decreasing_lr=(91, 136))
    assert [lr_at(cfg, e) for e in (0, 90, 91, 135, 136, 181)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    )


def test_cosine_schedule_starts_at_lr_and_reaches_half_at_the_middle():
    cfg = TrainConfig(epochs=10, lr=0.2, schedule="cosine")
    assert lr_at(cfg, 0) == pytest.approx(0.2)
    assert lr_at(cfg, 5) == pytest.approx(0.1)


def test_warmup_ramps_linearly_over_its_epochs():
    cfg = TrainConfig(epochs=10, lr=0.1, schedule="constant", warmup=2)
    assert lr_at(cfg, 0, 0, 10) == pytest.approx(0.1 * 0.1 / 2)
    assert lr_at(cfg, 1, 0, 10) == pytest.approx(0.1 * 1.1 / 2)
    assert lr_at(cfg, 2, 0, 10) == pytest.approx(0.1)


def test_bad_training_options_are_usage_errors():
    for bad, message in (
        (dict(epochs=0), "--epochs 0 must be >= 1"),
        (dict(batch_size=-1), "--batch-size -1 must be >= 1"),
        (dict(lr=0.0), "--lr 0.0 must be > 0"),
        (dict(lr=float("nan")), "--lr nan must be > 0"),
        (dict(momentum=-0.1, warmup=-1), "--momentum -0.1 must be >= 0; --warmup -1 must be >= 0"),
        (dict(decreasing_lr=(5, -2)), r"--decreasing-lr \(5, -2\) must be >= 0"),
    ):
        with pytest.raises(UsageError, match=message):
            TrainConfig(**bad)
    with pytest.raises(UsageError, match="one of multistep, cosine, constant \\(did you mean 'cosine'\\?\\)"):
        TrainConfig(schedule="cosin")


def test_resolve_device_auto_prefers_cuda_then_mps_then_cpu_and_rejects_unknown_devices(monkeypatch):
    assert resolve_device("cpu").type == "cpu"
    for cuda, mps, expected in ((True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda cuda=cuda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda mps=mps: mps)
        assert resolve_device("auto").type == expected
    monkeypatch.undo()
    with pytest.raises(UnknownNameError, match="cuda"):
        resolve_device("cuad")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA is not available"):
            resolve_device("cuda")


def slow_augment(x, pad, flips, oys, oxs):
    """One image at a time, the obvious way."""
    out = []
    for img, f, oy, ox in zip(x, flips, oys, oxs, strict=True):
        p = F.pad(img, (pad, pad, pad, pad))[:, oy : oy + img.shape[1], ox : ox + img.shape[2]]
        out.append(p.flip(2) if f else p)
    return torch.stack(out)


def test_batch_augmentation_equals_a_per_image_crop_and_flip():
    x = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(3)
    got = augment(x, Augment(crop_pad=2, flip=True), gen)
    # Replay the same random draws in the same order.
    gen = torch.Generator().manual_seed(3)
    oys = torch.randint(0, 5, (16, 1), generator=gen).flatten().tolist()
    oxs = torch.randint(0, 5, (16, 1), generator=gen).flatten().tolist()
    flips = (torch.rand(16, generator=gen) < 0.5).tolist()
    assert torch.equal(got, slow_augment(x, 2, flips, oys, oxs))


def test_batches_cover_every_image_once_and_scale_to_unit_range():
    data = ImageSet(torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1) * 25, torch.arange(10))
    seen = torch.cat([y for _, y in batches(data, 4, shuffle=True, gen=torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == list(range(10))
    x, _ = next(batches(data, 10))
    assert x.dtype == torch.float32 and x.max().item() == pytest.approx(225 / 255)


def test_training_the_same_seed_twice_gives_identical_weights(digits, tiny_model):
    import copy

    other = copy.deepcopy(tiny_model)
    cfg = TrainConfig(epochs=1, batch_size=128)
    fit(tiny_model, digits.train, cfg, seed=5)
    fit(other, digits.train, cfg, seed=5)
    for (k, a), b in zip(tiny_model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_training_learns_digits_far_above_chance(digits, tiny_model):
    result = fit(tiny_model, digits.train, TrainConfig(epochs=3, batch_size=64, lr=0.05))
    assert result.images == 3 * len(digits.train) and result.seconds > 0
    assert accuracy(tiny_model, digits.test) > 60


def test_a_diverging_loss_stops_training_with_a_clear_error(digits, tiny_model):
    def exploding(out, batch, epoch):
        return F.cross_entropy(out, batch.y) * float("inf")

    with pytest.raises(DivergedError, match="epoch 1"):
        fit(tiny_model, digits.train, TrainConfig(epochs=2, batch_size=256), loss_fn=exploding, label="ga")


@pytest.mark.slow
def test_amp_runs_the_forward_and_loss_in_bf16_and_still_learns(digits, tiny_model):
    seen = []

    def loss_fn(out, batch, epoch):
        seen.append(out.dtype)
        return F.cross_entropy(out, batch.y)

    with runtime(amp=True):
        fit(tiny_model, digits.train, TrainConfig(epochs=3, batch_size=64, lr=0.05), loss_fn=loss_fn)
    fit(tiny_model, digits.train, TrainConfig(epochs=1, batch_size=64, lr=0.05), loss_fn=loss_fn)
    steps = 3 * -(-len(digits.train) // 64)
    assert set(seen[:steps]) == {torch.bfloat16} and set(seen[steps:]) == {torch.float32}
    assert all(p.dtype == torch.float32 for p in tiny_model.parameters())  # weights stay float32
    assert accuracy(tiny_model, digits.test) > 60


def test_channels_last_is_used_inside_and_undone_after(tiny_model):
    # (a conv with one input channel is contiguous in both layouts, so those are left out)
    convs = [m.weight for m in tiny_model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1]
    assert convs
    with fast_layout(tiny_model, torch.device("cpu")) as layout:
        assert layout == torch.channels_last
        assert all(
            w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in convs
        )
    assert all(w.is_contiguous() for w in tiny_model.parameters())
    with fast_layout(tiny_model, torch.device("mps")) as layout:  # only changes the model's layout
        assert layout == torch.contiguous_format and all(w.is_contiguous() for w in convs)


def test_a_compiler_failure_is_a_one_line_error(digits, tiny_model, monkeypatch):
    def broken(model):
        def forward(x):
            raise torch._dynamo.exc.TorchDynamoException("no C++ compiler found\nlong trace")

        return forward

    monkeypatch.setattr(torch, "compile", broken)
    with runtime(compile=True), pytest.raises(SmuError) as caught:
        fit(tiny_model, digits.train, TrainConfig(epochs=1))
    assert caught.value.message == "--compile failed: no C++ compiler found"
    assert "without --compile" in caught.value.hint


@pytest.mark.slow
def test_compiled_training_matches_eager_training(digits, tiny_model):
    """torch.compile runs the same steps (one short epoch: compiling takes most of this test's time)."""
    import copy

    eager = copy.deepcopy(tiny_model)
    data = digits.train.subset(torch.arange(512))
    cfg = TrainConfig(epochs=1, batch_size=128, lr=0.05)
    with runtime(compile=True):
        compiled = fit(tiny_model, data, cfg)
    plain = fit(eager, data, cfg)
    assert compiled.loss == pytest.approx(plain.loss, rel=1e-3)
    for (k, a), b in zip(tiny_model.state_dict().items(), eager.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-4), k


def test_amp_on_a_gpu_without_bf16_is_a_usage_error(monkeypatch):
    from smu.execution.engine import _autocast

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla P100")
    with pytest.raises(UsageError, match="Tesla P100 has no bf16"):
        _autocast(torch.device("cuda"), True)
    assert _autocast(torch.device("cuda"), False) is contextlib.nullcontext  # without --amp: nothing checked


def test_predicting_leaves_the_parameters_usable_for_gradients(digits, tiny_model):
    from smu.execution.engine import predict

    predict(tiny_model, digits.test)
    assert not any(p.is_inference() for p in tiny_model.parameters())
    loss = F.cross_entropy(tiny_model.eval()(digits.test.x[:8].float() / 255), digits.test.y[:8])
    assert all(g is not None for g in torch.autograd.grad(loss, list(tiny_model.parameters())))
