"""swin_t: the research code's key layout, a literal reference forward, checkpoint import, image sizes.

``swin_t_original_keys.json`` is the state dict (key -> shape, in order) of the research code's CIFAR
model, ``models/swin.py``'s ``swin_t(window_size=4, num_classes=10, downscaling_factors=(2, 2, 2, 1))``,
written once by running that code.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call, grad, vmap

from smu.core.errors import ArtifactError, UsageError
from smu.models import Classifier
from smu.models.swin import MASKS, SwinTransformer, from_original, swin_t

ORIGINAL_KEYS = json.loads((Path(__file__).parent / "swin_t_original_keys.json").read_text())
CIFAR_MEAN, CIFAR_STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]


def tiny(window: int = 4, channels: int = 3, num_classes: int = 5) -> SwinTransformer:
    torch.manual_seed(0)
    model = SwinTransformer(
        hidden_dim=16,
        layers=(2, 2, 2, 2),
        heads=(1, 2, 2, 4),
        channels=channels,
        num_classes=num_classes,
        head_dim=8,
        window_size=window,
    )
    with torch.no_grad():  # LayerNorms off their (1, 0) start, so a swapped weight and bias would show
        for name, p in model.named_parameters():
            if ".norm." in name or name.startswith("mlp_head.0"):
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


# ── A slow, literal Swin forward, written from the definitions rather than from smu's code ─────────────


def merge_patches(x: Tensor, k: int, weight: Tensor, bias: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, C', H/k, W/k): each k×k patch, flattened as nn.Unfold orders it, times weight."""
    b, c, h, w = x.shape
    out = torch.empty(b, weight.shape[0], h // k, w // k, dtype=x.dtype)
    for i in range(h // k):
        for j in range(w // k):
            patch = x[:, :, i * k : (i + 1) * k, j * k : (j + 1) * k].reshape(b, c * k * k)
            out[:, :, i, j] = patch @ weight.T + bias
    return out


def window_attention(x: Tensor, p: dict[str, Tensor], heads: int, window: int, shifted: bool) -> Tensor:
    """(B, C, H, W) -> same: attention inside each window of the map rolled up-left by window // 2
    when shifted, where two tokens of a window see each other only if neither or both came round the
    bottom edge, and likewise the right edge."""
    b, c, h, w = x.shape
    s = window // 2 if shifted else 0
    x = torch.roll(x, (-s, -s), dims=(2, 3))
    qkv = torch.einsum("bchw,oc->bohw", x, p["to_qkv.weight"])
    d = qkv.shape[1] // (3 * heads)
    out = torch.zeros(b, heads * d, h, w, dtype=x.dtype)
    for top in range(0, h, window):
        for left in range(0, w, window):
            spots = [(top + i, left + j) for i in range(window) for j in range(window)]
            tokens = torch.stack([qkv[:, :, r, col] for r, col in spots], dim=1)  # (B, T, 3·heads·d)
            extra = torch.empty(len(spots), len(spots), dtype=x.dtype)  # position bias, or -inf
            for a, (ra, ca) in enumerate(spots):
                for z, (rz, cz) in enumerate(spots):
                    apart = s and ((ra >= h - s) != (rz >= h - s) or (ca >= w - s) != (cz >= w - s))
                    rel = p["pos_embedding"][rz - ra + window - 1, cz - ca + window - 1]
                    extra[a, z] = -math.inf if apart else rel
            for head in range(heads):
                q, k, v = (
                    tokens[:, :, (part * heads + head) * d : (part * heads + head + 1) * d]
                    for part in range(3)
                )
                scores = q @ k.transpose(1, 2) / math.sqrt(d) + extra
                e = (scores - scores.max(dim=-1, keepdim=True).values).exp()
                weights = e / e.sum(dim=-1, keepdim=True)
                for a, (r, col) in enumerate(spots):
                    out[:, head * d : (head + 1) * d, r, col] = (weights @ v)[:, a]
    out = torch.einsum("bchw,oc->bohw", out, p["to_out.weight"]) + p["to_out.bias"][:, None, None]
    return torch.roll(out, (s, s), dims=(2, 3))


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """LayerNorm over the channels of (B, C, H, W), by its formula."""
    mean = x.mean(dim=1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5) * weight[:, None, None] + bias[:, None, None]


def reference_forward(model: SwinTransformer, images: Tensor, window: int, heads: list[int]) -> Tensor:
    p = {k: v.double() for k, v in model.state_dict().items()}
    x = images.double()
    for stage in range(1, 5):
        at = f"stage{stage}."
        k = round(math.sqrt(p[at + "patch_partition.linear.weight"].shape[1] / x.shape[1]))
        x = merge_patches(
            x, k, p[at + "patch_partition.linear.weight"], p[at + "patch_partition.linear.bias"]
        )
        pairs = {int(key.split(".")[2]) for key in p if key.startswith(at + "layers.")}
        for pair in sorted(pairs):
            for half, shifted in ((0, False), (1, True)):
                blk = f"{at}layers.{pair}.{half}."
                attn = {key.removeprefix(blk + "attention_block.fn.fn."): v for key, v in p.items()}
                y = layer_norm(
                    x, p[blk + "attention_block.fn.norm.weight"], p[blk + "attention_block.fn.norm.bias"]
                )
                x = x + window_attention(y, attn, heads[stage - 1], window, shifted)
                y = layer_norm(x, p[blk + "mlp_block.fn.norm.weight"], p[blk + "mlp_block.fn.norm.bias"])
                hidden = torch.einsum("bchw,oc->bohw", y, p[blk + "mlp_block.fn.fn.net.0.weight"])
                hidden = F.gelu(hidden + p[blk + "mlp_block.fn.fn.net.0.bias"][:, None, None])
                mlp = torch.einsum("bchw,oc->bohw", hidden, p[blk + "mlp_block.fn.fn.net.2.weight"])
                x = x + mlp + p[blk + "mlp_block.fn.fn.net.2.bias"][:, None, None]
    pooled = x.mean(dim=(2, 3))
    pooled = F.layer_norm(pooled, pooled.shape[1:], p["mlp_head.0.weight"], p["mlp_head.0.bias"])
    return pooled @ p["mlp_head.1.weight"].T + p["mlp_head.1.bias"]


# ── Tests ───────────────────────────────────────────────────────────────────────────────────────────────


def test_swin_t_has_the_research_codes_keys_shapes_and_order_with_the_masks_as_buffers():
    with torch.device("meta"):
        model = swin_t(3, 32, 10)
    saved = {k: list(v.shape) for k, v in model.state_dict().items()}
    masks = {k: list(v.shape) for k, v in model.named_buffers() if k.rsplit(".", 1)[-1] in MASKS}
    assert list(saved) == [k for k in ORIGINAL_KEYS if k.rsplit(".", 1)[-1] not in MASKS]
    assert saved | masks == ORIGINAL_KEYS
    assert len(masks) == 12  # one pair per shifted block: 1 + 1 + 3 + 1


def test_swin_t_has_26_6_million_weights():
    with torch.device("meta"):
        assert sum(p.numel() for p in swin_t(3, 32, 10).parameters()) == 26_598_646


@pytest.mark.parametrize("window", [4, 2])
def test_a_tiny_swin_matches_a_literal_window_by_window_reference(window):
    # Window 4 leaves single windows in stages 3-4 (both masks on one window); window 2 shifts many.
    heads = [1, 2, 2, 4]
    model = tiny(window)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fast = model(images)
    expected = reference_forward(model, images, window, heads)
    assert fast.shape == (2, 5)
    torch.testing.assert_close(fast.double(), expected, atol=1e-5, rtol=0)


def test_every_weight_of_a_tiny_swin_gets_a_finite_gradient():
    model = tiny().train()
    model(torch.rand(2, 3, 32, 32)).logsumexp(dim=1).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def literal_mask(window: int, along_rows: bool) -> Tensor:
    """The research code's shift mask, entry by entry: -inf between a token that came round the far
    edge (the last window // 2 rows, or columns) and one that did not."""
    mask = torch.zeros(window**2, window**2)
    for a in range(window**2):
        for z in range(window**2):
            pa, pz = (a // window, z // window) if along_rows else (a % window, z % window)
            if (pa >= window - window // 2) != (pz >= window - window // 2):
                mask[a, z] = -math.inf
    return mask


def research_format(model: SwinTransformer, window: int) -> dict[str, Tensor]:
    """The model's state dict as the research code saves it: the -inf masks included, normalize attached."""
    state = dict(model.state_dict())
    for key in [k for k in state if k.endswith(".1.attention_block.fn.fn.pos_embedding")]:
        base = key.removesuffix("pos_embedding")
        state[base + "upper_lower_mask"] = literal_mask(window, along_rows=True)
        state[base + "left_right_mask"] = literal_mask(window, along_rows=False)
    return state | {"normalize.mean": torch.tensor(CIFAR_MEAN), "normalize.std": torch.tensor(CIFAR_STD)}


@pytest.mark.parametrize("window", [4, 2])
def test_a_research_checkpoint_imports_with_identity_normalisation_and_identical_logits(window):
    source = tiny(window)
    state = from_original(research_format(source, window))
    assert not any(k.rsplit(".", 1)[-1] in MASKS for k in state)
    assert torch.equal(state["normalize.mean"], torch.zeros(3))
    assert torch.equal(state["normalize.std"], torch.ones(3))
    net = SwinTransformer(
        hidden_dim=16, layers=(2, 2, 2, 2), heads=(1, 2, 2, 4), num_classes=5, head_dim=8, window_size=window
    )
    imported = Classifier(net, mean=CIFAR_MEAN, std=CIFAR_STD, channels=3, size=None).eval()
    prefixed = {k if k.startswith("normalize.") else f"net.{k}": v for k, v in state.items()}
    imported.load_state_dict(prefixed, strict=True)
    images = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        # The research Swin never normalised, so its logits are those of the raw image.
        assert torch.equal(imported(images), source(images))


@pytest.mark.parametrize(
    "damage",
    [
        lambda m: m.index_fill_(0, torch.tensor([0]), 0.0),  # a row of -infs turned to 0
        lambda m: m.nan_to_num_(neginf=-1e9),  # finite instead of -inf
        lambda m: m.fill_(math.nan),
        lambda m: m[:-1],  # the wrong shape
        lambda m: m.flip(0),  # the other window half
    ],
)
def test_a_corrupted_shift_mask_is_refused(damage):
    state = research_format(tiny(), window=4)
    key = "stage1.layers.0.1.attention_block.fn.fn.upper_lower_mask"
    state[key] = damage(state[key].clone())
    with pytest.raises(ArtifactError, match="upper_lower_mask") as err:
        from_original(state)
    assert "\n" not in str(err.value) and err.value.hint


def test_the_left_right_mask_is_not_accepted_in_place_of_the_upper_lower_one():
    state = research_format(tiny(), window=4)
    base = "stage2.layers.0.1.attention_block.fn.fn."
    state[base + "upper_lower_mask"] = state[base + "left_right_mask"]
    with pytest.raises(ArtifactError, match=r"stage2\.layers\.0\.1"):
        from_original(state)


def test_without_a_normalize_module_the_import_adds_none():
    state = research_format(tiny(), window=4)
    del state["normalize.mean"], state["normalize.std"]
    assert "normalize.mean" not in from_original(state)


@pytest.mark.parametrize("image_size", [8, 28, 48])
def test_an_image_side_that_is_no_multiple_of_32_is_a_usage_error(image_size):
    with pytest.raises(UsageError, match=f"multiple of 32.*got {image_size}") as err:
        swin_t(1, image_size, 10)
    assert "\n" not in str(err.value)
    assert err.value.hint.startswith(f"resize the images to {-(-image_size // 32) * 32}x")


@pytest.mark.parametrize("image_size", [32, 64, 224])
def test_sides_that_are_multiples_of_32_build(image_size):
    with torch.device("meta"):
        swin_t(1, image_size, 10)


def test_a_larger_image_gives_more_windows_and_the_same_logits_shape():
    model = tiny(channels=1)
    assert model(torch.rand(2, 1, 64, 64)).shape == (2, 5)


def test_per_sample_gradients_by_vmap_match_one_image_at_a_time():
    # Influence unlearning takes per-sample gradients with torch.func; in-place ops on batched
    # tensors would break it.
    model = tiny()
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b for n, b in model.named_buffers()}
    images, labels = torch.rand(2, 3, 32, 32), torch.tensor([0, 3])

    def loss(p: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(functional_call(model, (p, buffers), (x[None],)), y[None])

    batched = vmap(grad(loss), in_dims=(None, 0, 0))(params, images, labels)
    for i in range(2):
        one = grad(loss)(params, images[i], labels[i])
        assert all(torch.allclose(batched[n][i], one[n], atol=1e-6) for n in params)


@pytest.mark.slow
def test_smu_import_turns_a_research_swin_t_checkpoint_into_a_model_with_its_logits(tmp_path):
    from conftest import smu

    from smu.io import artifacts
    from smu.models.swin import swin_t

    torch.manual_seed(0)
    source = swin_t(3, 32, 10).eval()
    state = {f"module.{k}": v for k, v in research_format(source, 4).items()}  # DataParallel, as saved
    torch.save({"state_dict": state, "epoch": 10}, tmp_path / "swin.pth.tar")
    out = tmp_path / "out"
    result = smu(
        "import", tmp_path / "swin.pth.tar", "--arch", "swin_t", "--dataset", "cifar10", "--out", out
    )
    assert result.exit_code == 0, result.output
    model = artifacts.load_model(out / "model.safetensors").model.eval()
    images = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(images), source(images))
