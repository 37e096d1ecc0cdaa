"""The architecture registry: shapes, gradients, state-dict layout, normalisation and name lookup."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from smu.core.errors import UnknownNameError, UsageError
from smu.models import ARCHS, Classifier, Normalize, build_model, classifier_layer

# (in_channels, image_size): digits, Fashion-MNIST, CIFAR.
SHAPES = [(1, 8), (1, 28), (3, 32)]

# Conv layers a pruner sees: stem + 2 per block + projections / bottlenecks. A functional conv would
# escape pruning, so the counts pin every conv down as an nn.Conv2d module.
CONV_COUNTS = {
    "resnet18": 20,
    "resnet20": 19,
    "vgg16_bn": 13,
    "resnet50": 53,
    "cnn": 3,
    "cnn_gn": 3,
    "vit": 1,
    "swin_t": 0,
}

HEADS = {arch: "net.fc" for arch in ARCHS} | {
    "vgg16_bn": "net.classifier",
    "vit": "net.head",
    "swin_t": "net.mlp_head.1",
}


def make(arch: str, in_channels: int = 1, image_size: int = 8, num_classes: int = 7) -> Classifier:
    return build_model(
        arch,
        in_channels=in_channels,
        image_size=image_size,
        num_classes=num_classes,
        mean=[0.5] * in_channels,
        std=[0.25] * in_channels,
    )


def test_the_registry_holds_exactly_the_documented_architectures():
    assert list(ARCHS) == ["resnet18", "resnet20", "vgg16_bn", "resnet50", "cnn", "cnn_gn", "vit", "swin_t"]
    assert all(spec.summary and "\n" not in spec.summary for spec in ARCHS.values())


@pytest.mark.parametrize("in_channels,image_size", SHAPES)
@pytest.mark.parametrize("arch", list(ARCHS))
def test_every_arch_gives_one_logit_per_class_and_a_gradient_for_every_weight(arch, in_channels, image_size):
    torch.manual_seed(0)
    model = make(arch, in_channels, image_size, num_classes=7)
    # Batch 2: BatchNorm in training mode needs more than one value per channel on 1x1 maps.
    out = model(torch.rand(2, in_channels, image_size, image_size))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("arch", ["cnn", "resnet20"])
def test_small_archs_also_take_full_size_imagenet_inputs(arch):
    model = make(arch, in_channels=3, image_size=224, num_classes=1000).eval()
    with torch.inference_mode():
        assert model(torch.rand(1, 3, 224, 224)).shape == (1, 1000)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_state_dict_keys_are_the_normalisation_buffers_then_the_network(arch):
    keys = list(make(arch).state_dict())
    assert keys[:2] == ["normalize.mean", "normalize.std"]
    assert all(k.startswith("net.") for k in keys[2:])


@pytest.mark.parametrize("arch", list(ARCHS))
def test_every_conv_is_a_prunable_conv2d_module(arch):
    convs = [m for m in make(arch).modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == CONV_COUNTS[arch]


@pytest.mark.parametrize("image_size,pools", [(8, 3), (28, 4), (32, 5)])
def test_vgg_pools_only_while_the_map_can_still_be_halved(image_size, pools):
    model = make("vgg16_bn", image_size=image_size)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == pools


def test_normalize_subtracts_the_mean_and_divides_by_the_std_per_channel():
    norm = Normalize(mean=[0.5, 0.25], std=[0.5, 0.25])
    x = torch.tensor([[[[0.0, 1.0]], [[0.25, 0.75]]]])  # shape (1, 2, 1, 2)
    expected = torch.tensor([[[[-1.0, 1.0]], [[0.0, 2.0]]]])
    assert torch.equal(norm(x), expected)
    assert norm.mean.dtype == norm.std.dtype == torch.float32
    assert norm.mean.shape == norm.std.shape == (2,)
    assert set(norm.state_dict()) == {"mean", "std"}


def test_a_classifier_normalises_its_input_before_the_network():
    model = Classifier(nn.Identity(), mean=[0.5], std=[0.5], channels=1, size=None)
    assert torch.equal(model(torch.ones(1, 1, 2, 2)), torch.ones(1, 1, 2, 2))


@pytest.mark.parametrize("arch", list(ARCHS))
def test_classifier_layer_names_the_final_linear_layer(arch):
    model = make(arch, num_classes=7)
    name = classifier_layer(model)
    assert name == HEADS[arch]
    head = model.get_submodule(name)
    assert isinstance(head, nn.Linear) and head.out_features == 7
    assert f"{name}.weight" in dict(model.named_parameters())


@pytest.mark.parametrize("arch", list(ARCHS))
def test_the_same_seed_gives_identical_weights(arch):
    torch.manual_seed(3)
    first = make(arch).state_dict()
    torch.manual_seed(3)
    second = make(arch).state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_an_unknown_arch_suggests_the_closest_name():
    with pytest.raises(UnknownNameError) as err:
        make("resnet2")
    assert "'resnet2'" in err.value.message
    assert "did you mean 'resnet20'" in err.value.hint


def test_a_mean_per_channel_is_required():
    with pytest.raises(UsageError, match="3 normalisation means"):
        build_model("cnn", in_channels=3, image_size=32, num_classes=10, mean=[0.5], std=[0.5])


def test_resnet20_has_about_a_quarter_million_parameters():
    model = make("resnet20", in_channels=3, image_size=32, num_classes=10)
    count = sum(p.numel() for p in model.parameters())
    assert 260_000 <= count <= 280_000
