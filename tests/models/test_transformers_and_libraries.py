"""Transformers and library models: the ViT's attention, architecture specs, the linear scope, the
input adaptation that lets a torchvision or timm classifier take any dataset, SynFlow through LayerNorm."""

from __future__ import annotations

import builtins
import math

import pytest
import torch
from torch import nn

from smu.core.errors import UsageError
from smu.core.masks import Mask, scope_parameters
from smu.methods.pruning import METHODS as PRUNING
from smu.methods.pruning import PruneContext
from smu.models import build_model, parse_arch
from smu.models.vit import Attention, ViT, size_for
from smu.workflows.prune import check_scope


def make(arch: str, channels: int = 1, size: int = 8, classes: int = 10):
    return build_model(
        arch,
        in_channels=channels,
        image_size=size,
        num_classes=classes,
        mean=[0.5] * channels,
        std=[0.25] * channels,
    )


def test_vit_attention_is_softmax_of_scaled_dot_products_times_values():
    torch.manual_seed(0)
    attn, x = Attention(dim=12, heads=3), torch.randn(2, 5, 12)
    q, k, v = attn.qkv(x).split(12, dim=-1)
    heads = [slice(h * 4, (h + 1) * 4) for h in range(3)]
    # The literal definition, one head at a time.
    out = torch.cat(
        [
            torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / math.sqrt(4), dim=-1) @ v[..., s]
            for s in heads
        ],
        dim=-1,
    )
    assert torch.allclose(attn(x), attn.proj(out), atol=1e-6)


@pytest.mark.parametrize("size,params", [(8, 136_138), (28, 805_130), (32, 6_268_810)])
def test_the_vit_is_sized_by_the_image(size, params):
    channels = 3 if size == 32 else 1
    with torch.device("meta"):
        model = make("vit", channels, size)
    assert sum(p.numel() for p in model.parameters()) == params
    assert size % size_for(size).patch == 0


def test_a_vit_refuses_an_image_its_patches_do_not_tile():
    with pytest.raises(UsageError, match="divisible by 4"):
        ViT(1, 30, 10, size_for(30))


def test_the_linear_scope_is_every_attention_and_mlp_projection_and_no_head_or_embedding():
    model = make("vit")
    names = set(scope_parameters(model, "linear"))
    per_block = {"attn.qkv.weight", "attn.proj.weight", "fc1.weight", "fc2.weight"}
    assert names == {f"net.blocks.{b}.{n}" for b in range(4) for n in per_block}
    assert set(scope_parameters(model, "conv")) == {"net.patch_embed.weight"}
    assert set(scope_parameters(model, "all")) == names | {"net.patch_embed.weight", "net.head.weight"}


def test_the_linear_scope_takes_torchvisions_fused_attention_projection():
    with torch.device("meta"):
        model = make("torchvision:vit_b_16", 3, 32)
    names = scope_parameters(model, "linear")
    assert "net.encoder.layers.encoder_layer_0.self_attention.in_proj_weight" in names
    assert "net.heads.head.weight" not in names


@pytest.mark.parametrize(
    "arch,scope,hint", [("vit", "conv", "--scope linear"), ("cnn", "linear", "--scope conv")]
)
def test_a_scope_that_holds_almost_no_weights_is_refused_with_the_one_that_does(arch, scope, hint):
    with pytest.raises(UsageError) as err:
        check_scope(make(arch), scope, arch)
    assert f"--scope {scope} covers" in err.value.message and hint in err.value.hint


def test_synflow_scores_a_vit_through_layernorm_and_keeps_the_count():
    torch.manual_seed(0)
    model = make("vit")
    mask = Mask.ones(model, "linear")
    _, total = mask.counts()
    ctx = PruneContext(
        (1, 8, 8), torch.Generator().manual_seed(0), PRUNING["synflow"].config(synflow_iterations=5)
    )
    out = PRUNING["synflow"].choose(model, mask, int(0.8 * total), ctx)
    pruned, _ = out.counts()
    assert pruned == int(0.8 * total)
    # Every block keeps weights: LayerNorm as its affine part lets the flow reach all of them.
    for b in range(4):
        assert out.tensors[f"net.blocks.{b}.fc1.weight"].sum() > 0
    assert isinstance(model.net.norm, nn.LayerNorm) and "forward" not in vars(
        model.net.norm
    )  # the model untouched


def test_a_grey_image_is_repeated_to_the_three_channels_a_torchvision_model_takes():
    torch.manual_seed(0)
    model = make("torchvision:resnet18").eval()
    x = torch.rand(2, 1, 8, 8)
    assert model.normalize.mean.tolist() == [0.5] * 3
    with torch.no_grad():
        assert torch.equal(model(x), model.net(model.normalize(x.expand(-1, 3, -1, -1))))


def test_at_size_builds_the_network_for_that_size_and_resizes_inside_the_model():
    model = make("timm:vit_tiny_patch16_224@32")
    assert model.size == 32 and model.net.patch_embed.img_size == (32, 32)
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    assert make("vit@8").size is None  # the data's own size: nothing to resize


@pytest.mark.parametrize(
    "spec,message",
    [
        ("torchvision:resnet181", "did you mean 'resnet18'"),
        ("timm:vit_tiny_patch16", "did you mean"),
        ("keras:resnet", "unknown library 'keras'"),
        ("vit@big", "size after @ must be an integer from 1 to 4096"),
        ("vit@100000", "size after @ must be an integer from 1 to 4096"),
        ("torchvision:fasterrcnn_resnet50_fpn", "no classification model"),
    ],
)
def test_a_bad_architecture_spec_is_one_clear_error(spec, message):
    with pytest.raises(UsageError) as err:
        parse_arch(spec)
    assert message in str(err.value)


def test_a_library_model_that_cannot_take_the_size_says_how_to_resize(tmp_path):
    with pytest.raises(UsageError) as err:
        make("torchvision:vit_b_16", 3, 30)
    assert "torchvision:vit_b_16@224" in err.value.hint


def test_without_the_timm_extra_a_timm_spec_names_the_extra(monkeypatch):
    real = builtins.__import__

    def no_timm(name, *args, **kwargs):
        if name == "timm":
            raise ImportError("No module named 'timm'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_timm)
    with pytest.raises(UsageError) as err:
        parse_arch("timm:resnet18")
    assert err.value.hint == "pip install 'smu[timm]'"
