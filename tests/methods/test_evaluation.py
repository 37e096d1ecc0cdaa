import dataclasses
import math

import numpy as np
import pytest
import torch
from sklearn.svm import SVC
from torch import nn

from smu.data.forget import resolve_forget
from smu.evaluation import gap, unlearning_metrics
from smu.evaluation.mia import feature, m_entropy, svc_attack
from smu.execution.engine import TrainConfig, fit, predict
from smu.models import build_model


class AlwaysPredicts(nn.Module):
    """A model whose predictions we control: always class ``c``."""

    def __init__(self, c: int, classes: int = 10):
        super().__init__()
        self.c, self.classes = c, classes
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        out = torch.zeros(len(x), self.classes)
        out[:, self.c] = 5.0
        return out + self.dummy


def share(labels, c):
    return 100.0 * float((labels == c).double().mean())


def test_ua_ra_ta_follow_from_the_predictions(digits):
    m = unlearning_metrics(AlwaysPredicts(0), digits, resolve_forget("class:3", digits))
    retain_y = resolve_forget("class:3", digits).retain(digits).y
    test_y = digits.test.y[digits.test.y != 3]  # class-wise: TA leaves the forgotten class out
    assert m["ua"] == 100.0 and m["forget_acc"] == 0.0
    assert m["ra"] == pytest.approx(share(retain_y, 0)) and m["ta"] == pytest.approx(share(test_y, 0))
    m = unlearning_metrics(AlwaysPredicts(3), digits, resolve_forget("class:3", digits))
    assert m["ua"] == 0.0 and m["ra"] == 0.0 and m["ta"] == 0.0


def test_random_forgetting_keeps_every_class_in_the_test_set(digits):
    m = unlearning_metrics(AlwaysPredicts(3), digits, resolve_forget("random:10%", digits))
    assert m["ta"] == pytest.approx(share(digits.test.y, 3))


def test_modified_entropy_matches_song_and_mittal_on_a_hand_case():
    p = torch.tensor([[0.7, 0.2, 0.1]], dtype=torch.float64)
    expected = -(1 - 0.7) * math.log(0.7) - 0.2 * math.log(1 - 0.2) - 0.1 * math.log(1 - 0.1)
    assert m_entropy(p, torch.tensor([0])).item() == pytest.approx(expected)
    wrong = -(1 - 0.2) * math.log(0.2) - 0.7 * math.log(1 - 0.7) - 0.1 * math.log(1 - 0.1)
    assert m_entropy(p, torch.tensor([1])).item() == pytest.approx(wrong)


def test_features_have_the_documented_shapes_and_values():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]))
    y = torch.tensor([0, 1])
    assert feature("confidence", logits, y)[:, 0] == pytest.approx([0.7, 0.1])
    assert feature("correctness", logits, y)[:, 0].tolist() == [1.0, 0.0]
    assert feature("prob", logits, y).shape == (2, 3)
    h = -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1))
    assert feature("entropy", logits, y)[0, 0] == pytest.approx(h)


def test_the_svc_attack_separates_what_is_separable():
    rng = np.random.default_rng(0)
    members, non = rng.normal(1.0, 0.05, (200, 1)), rng.normal(0.0, 0.05, (200, 1))
    assert svc_attack(members, non, target_out=rng.normal(0.0, 0.05, (50, 1))) == 100.0
    assert svc_attack(members, non, target_out=rng.normal(1.0, 0.05, (50, 1))) == 0.0
    assert svc_attack(members, non, target_in=members[:10], target_out=non[:10]) == 100.0


def test_gap_is_the_absolute_difference_and_avg_gap_their_mean():
    a = {"ua": 10.0, "mia_efficacy": 20.0, "ra": 99.0, "ta": 90.0}
    b = {"ua": 12.0, "mia_efficacy": 14.0, "ra": 100.0, "ta": 89.0}
    assert gap(a, b) == {"ua": 2.0, "mia_efficacy": 6.0, "ra": 1.0, "ta": 1.0, "avg": 2.5}


@pytest.fixture(scope="module")
def trained_pair(digits):
    """A cnn trained on all of digits, and one trained without class 3."""
    forget = resolve_forget("class:3", digits)
    models = []
    for data in (digits.train, forget.retain(digits)):
        torch.manual_seed(0)
        info = digits.info
        m = build_model("cnn", in_channels=1, image_size=8, num_classes=10, mean=info.mean, std=info.std)
        fit(m, data, TrainConfig(epochs=12, batch_size=64, lr=0.05), seed=0)
        models.append(m)
    return forget, models


@pytest.mark.slow
def test_mia_efficacy_is_near_100_without_the_class_and_low_with_it(digits, trained_pair):
    forget, (original, retrained) = trained_pair
    before = unlearning_metrics(original, digits, forget)
    after = unlearning_metrics(retrained, digits, forget)
    assert after["ua"] == 100.0 and after["mia_efficacy"] > 95.0
    assert before["ua"] < 10.0 and before["mia_efficacy"] < 30.0


def true_label_confidence(model, data):
    p = torch.softmax(predict(model, data).double(), 1)
    return p[torch.arange(len(data)), data.y].numpy()[:, None]


def test_mia_efficacy_agrees_with_an_independent_implementation_of_the_attack(digits, trained_pair):
    """On the original model (efficacy near 0) and on the retrained one (near 100), for both scenarios."""
    _, models = trained_pair
    seen = []
    for model in models:
        for spec in ("class:3", "random:10%"):
            fs = resolve_forget(spec, digits, seed=1)
            test = (
                digits.test
                if fs.forget_class is None
                else digits.test.subset((digits.test.y != 3).nonzero()[:, 0])
            )
            shadow_in = true_label_confidence(model, fs.retain(digits))[: len(test)]
            shadow_out = true_label_confidence(model, test)
            clf = SVC(C=3, gamma="auto", kernel="rbf").fit(
                np.concatenate([shadow_in, shadow_out]),
                np.r_[np.ones(len(shadow_in)), np.zeros(len(shadow_out))],
            )
            expected = 100.0 * float(
                (clf.predict(true_label_confidence(model, fs.forget(digits))) == 0).mean()
            )
            assert unlearning_metrics(model, digits, fs)["mia_efficacy"] == pytest.approx(expected)
            seen.append(expected)
    assert seen[2] > 95.0 and seen[0] < 30.0  # the class-wise cases span the range


def test_mia_shadow_data_are_the_first_retain_samples_and_the_test_set(digits, trained_pair, monkeypatch):
    import smu.evaluation as evaluation

    calls = []
    monkeypatch.setattr(evaluation, "svc_attack", lambda *args, **kwargs: calls.append((args, kwargs)) or 0.0)
    _, (original, _) = trained_pair
    fs = resolve_forget("random:10%", digits, seed=1)
    unlearning_metrics(original, digits, fs)
    (shadow_in, shadow_out), targets = calls[0]
    test = digits.test
    assert np.allclose(shadow_in, true_label_confidence(original, fs.retain(digits))[: len(test)])
    assert np.allclose(shadow_out, true_label_confidence(original, test))
    assert np.allclose(targets["target_out"], true_label_confidence(original, fs.forget(digits)))


def test_mia_shadow_sets_are_balanced_when_the_retain_set_is_smaller_than_the_test_set(
    digits, trained_pair, monkeypatch
):
    """A subset's retain set can be smaller than the test set: the attack then gets n of each."""
    import smu.evaluation as evaluation

    calls = []
    monkeypatch.setattr(evaluation, "svc_attack", lambda *args, **kwargs: calls.append(args) or 0.0)
    _, (original, _) = trained_pair
    small = resolve_forget("random:10%", digits, seed=1)
    big_test = dataclasses.replace(digits, test=digits.test.subset(torch.arange(len(digits.test)).repeat(6)))
    unlearning_metrics(original, big_test, small)
    (shadow_in, shadow_out), n = calls[0], len(small.retain(digits))
    assert len(shadow_in) == len(shadow_out) == n < len(big_test.test)
    assert np.allclose(shadow_out, true_label_confidence(original, big_test.test)[:n])


def test_mia_privacy_agrees_with_an_independent_implementation(digits, trained_pair):
    """Shadow: the first halves of retain and test; targets: the second halves (same size n each)."""
    forget, (original, _) = trained_pair
    retain, test = forget.retain(digits), forget.without_class(digits.test)
    n = min(len(retain), len(test)) // 2
    r, t = true_label_confidence(original, retain), true_label_confidence(original, test)
    clf = SVC(C=3, gamma="auto", kernel="rbf").fit(
        np.concatenate([r[:n], t[:n]]), np.r_[np.ones(n), np.zeros(n)]
    )
    members_found = float((clf.predict(r[n : 2 * n]) == 1).mean())
    non_members_found = float((clf.predict(t[n : 2 * n]) == 0).mean())
    expected = 100.0 * (members_found + non_members_found) / 2
    got = unlearning_metrics(original, digits, forget, privacy=True)["mia_privacy"]
    assert got == pytest.approx(expected)


def test_privacy_and_extra_features_are_reported_when_asked(digits, trained_pair):
    forget, (original, _) = trained_pair
    m = unlearning_metrics(original, digits, forget, features=("m_entropy", "confidence"), privacy=True)
    assert set(m["mia"]) == {"m_entropy", "confidence"} and m["mia_efficacy"] == m["mia"]["m_entropy"]
    alone = unlearning_metrics(original, digits, forget, features=("m_entropy",), privacy=True)
    assert m["mia_privacy"] == alone["mia_privacy"] and m["mia_efficacy"] == alone["mia_efficacy"]
