import pytest
import torch
from torch import nn

from smu.core.errors import UnknownNameError
from smu.core.masks import Mask, scope_parameters
from smu.execution.engine import TrainConfig, fit
from smu.methods.pruning import PruneConfig


def two_layer_net():
    net = nn.Sequential(
        nn.Conv2d(1, 2, 1, bias=False), nn.Conv2d(2, 1, 1, bias=False), nn.Flatten(), nn.Linear(4, 2)
    )
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([0.5, -0.1]).view(2, 1, 1, 1))
        net[1].weight.copy_(torch.tensor([0.3, -0.05]).view(1, 2, 1, 1))
    return net


def test_global_magnitude_pruning_removes_exactly_the_smallest_weights_across_layers():
    net = two_layer_net()
    mask = Mask.ones(net, "conv")
    params = dict(net.named_parameters())
    pruned = mask.prune_lowest({n: params[n].abs() for n in mask.tensors}, 2)
    # |w| = 0.5, 0.1 (layer 0) and 0.3, 0.05 (layer 1): the two smallest are in different layers.
    assert pruned.tensors["0.weight"].flatten().tolist() == [1.0, 0.0]
    assert pruned.tensors["1.weight"].flatten().tolist() == [1.0, 0.0]
    assert pruned.counts() == (2, 4)


def test_global_magnitude_matches_a_sort_of_all_weights_on_random_layers():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 16, 3), nn.Conv2d(16, 4, 1))
    mask = Mask.ones(net, "conv")
    params = dict(net.named_parameters())
    n = 700
    pruned = mask.prune_lowest({k: params[k].abs() for k in mask.tensors}, n)
    all_w = torch.cat([params[k].detach().abs().flatten() for k in mask.tensors])
    threshold = all_w.sort().values[n - 1]
    for k, m in pruned.items():
        w = params[k].detach().abs()
        assert bool((w[m == 0] <= threshold).all()) and bool((w[m == 1] >= threshold).all())
    assert pruned.counts()[0] == n


def test_a_later_round_never_revives_a_pruned_weight():
    net = two_layer_net()
    first = Mask.ones(net, "conv").prune_lowest(
        {
            "0.weight": torch.tensor([[9.0], [1.0]]).view(2, 1, 1, 1),
            "1.weight": torch.tensor([5.0, 6.0]).view(1, 2, 1, 1),
        },
        1,
    )
    # Now the pruned weight gets the highest score; it must stay pruned and one more must go.
    second = first.prune_lowest(
        {
            "0.weight": torch.tensor([0.0, 100.0]).view(2, 1, 1, 1),
            "1.weight": torch.tensor([5.0, 6.0]).view(1, 2, 1, 1),
        },
        2,
    )
    assert second.tensors["0.weight"].flatten().tolist() == [0.0, 0.0]


def test_revived_counts_the_pruned_weights_that_are_not_zero_and_leaves_the_mask_as_it_was():
    net = two_layer_net()
    params = dict(net.named_parameters())
    mask = Mask.ones(net, "conv").prune_lowest({n: params[n].abs() for n in ("0.weight", "1.weight")}, 2)
    mask = Mask({n: m.to(torch.uint8) for n, m in mask.items()})
    assert mask.revived(net) == 2  # nothing applied the mask yet
    assert {m.dtype for _, m in mask.items()} == {torch.uint8}  # counting casts nothing (apply does)
    mask.apply(net)
    assert mask.revived(net) == 0
    with torch.no_grad():
        net[0].weight.view(-1)[1] = -0.0  # -0.0 == 0: not revived
        net[1].weight.view(-1)[1] = 1e-30
    assert mask.revived(net) == 1


def test_imp_prunes_rate_of_what_is_left_each_round_to_reach_one_minus_keep_to_the_n():
    net = nn.Sequential(nn.Conv2d(10, 100, 10, bias=False))  # 100,000 weights
    cfg = PruneConfig(method="imp", rate=0.2, times=3).resolved(epochs=10)
    mask = Mask.ones(net, "conv")
    sparsities = []
    for _ in range(cfg.times):
        mask = mask.prune_lowest({"0.weight": torch.rand(100, 10, 10, 10)}, cfg.pruned_after_round(mask))
        sparsities.append(mask.sparsity())
    assert sparsities == pytest.approx([0.2, 0.36, 0.488], abs=1e-5)


def test_scope_conv_covers_only_conv_weights_and_all_adds_linear():
    net = two_layer_net()
    assert list(scope_parameters(net, "conv")) == ["0.weight", "1.weight"]
    assert list(scope_parameters(net, "all")) == ["0.weight", "1.weight", "3.weight"]
    with pytest.raises(UnknownNameError, match="conv"):
        scope_parameters(net, "convs")


def test_masked_weights_stay_exactly_zero_at_every_step_under_weight_decay_and_momentum(digits, tiny_model):
    params = dict(tiny_model.named_parameters())
    mask = Mask.ones(tiny_model, "all")
    mask = mask.prune_lowest({n: torch.rand(params[n].shape) for n in mask.tensors}, mask.counts()[1] // 2)
    cfg = TrainConfig(epochs=2, lr=0.5, batch_size=64, weight_decay=0.1, momentum=0.99)
    alive_at_step = []

    def check(module, args):  # runs before every forward pass, i.e. at every training step
        alive_at_step.append(sum(int((params[n][m == 0] != 0).sum()) for n, m in mask.items()))

    hook = tiny_model.register_forward_pre_hook(check)
    fit(tiny_model, digits.train, cfg, mask=mask)
    hook.remove()
    assert len(alive_at_step) == 2 * -(-len(digits.train) // 64)
    assert alive_at_step == [0] * len(alive_at_step)
    for name, m in mask.items():
        assert bool((params[name][m == 0] == 0).all()), name
        assert bool((params[name][m == 1] != 0).any()), name
