import math

import pytest
import torch

from lvm.train.losses import LOSS_PRESETS, TERMS, CompositeLoss


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_cosine_term_known_values():
    loss = CompositeLoss(cosine=1.0)
    x = _randn(4, 8)
    total, terms = loss(x, x)
    assert terms == {"cosine": pytest.approx(0.0, abs=1e-6)}
    assert float(total) == pytest.approx(0.0, abs=1e-6)
    e = torch.eye(4)
    assert loss(e[:2], e[2:])[1]["cosine"] == pytest.approx(1.0)          # orthogonal
    assert loss(e[:2], -e[:2])[1]["cosine"] == pytest.approx(2.0)         # opposite
    assert loss(3 * x, x)[1]["cosine"] == pytest.approx(0.0, abs=1e-6)    # scale-free


def test_mse_term_is_on_normalised_vectors():
    loss = CompositeLoss(cosine=0.0, mse=1.0)
    x = _randn(4, 8)
    assert loss(5 * x, x)[1]["mse"] == pytest.approx(0.0, abs=1e-6)
    e = torch.eye(8)
    # orthogonal unit vectors: |p - t|^2 = 2, averaged over D=8 dims
    assert loss(e[:2], e[2:4])[1]["mse"] == pytest.approx(2 / 8)


def test_infonce_aligned_batch_small_random_large():
    loss = CompositeLoss(cosine=0.0, infonce=1.0, temperature=0.07)
    e = torch.eye(8)
    aligned = loss(e, e)[1]["infonce"]
    # exact: -log(e^{1/T} / (e^{1/T} + 7)) with off-diagonal logits 0
    expected = -math.log(math.exp(1 / 0.07) / (math.exp(1 / 0.07) + 7))
    assert aligned == pytest.approx(expected, rel=0.05)  # float32 logsumexp near 0
    assert aligned < 1e-4
    rand = loss(_randn(8, 16, seed=1), _randn(8, 16, seed=2))[1]["infonce"]
    assert rand > 1.0
    # a single pair has no negatives: log(1) = 0
    assert loss(e[:1], e[:1])[1]["infonce"] == pytest.approx(0.0, abs=1e-6)


def test_infonce_is_symmetric():
    loss = CompositeLoss(cosine=0.0, infonce=1.0)
    a, b = _randn(6, 5, seed=3), _randn(6, 5, seed=4)
    assert loss(a, b)[1]["infonce"] == pytest.approx(loss(b, a)[1]["infonce"], rel=1e-5)


def test_moment_zero_when_distributions_equal():
    loss = CompositeLoss(cosine=0.0, moment=1.0)
    x = _randn(16, 8)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    assert loss(x[perm], x)[1]["moment"] == pytest.approx(0.0, abs=1e-6)   # same rows, other order
    assert loss(x + 2.0, x)[1]["moment"] > 0.05                              # shifted predictions


def test_variance_hinge_collapsed_vs_spread():
    loss = CompositeLoss(cosine=0.0, variance=1.0)
    t = _randn(32, 8)
    collapsed = t[:1].repeat(32, 1) + 1e-4 * _randn(32, 8, seed=5)
    assert loss(collapsed, t)[1]["variance"] > 0.1
    assert loss(t, t)[1]["variance"] == pytest.approx(0.0, abs=1e-7)
    # targets clustered around one direction, predictions spread over the sphere: no penalty
    clustered = torch.ones(32, 8) + 0.1 * _randn(32, 8, seed=6)
    assert loss(_randn(32, 8, seed=7), clustered)[1]["variance"] == 0.0


def test_total_is_weighted_sum_and_only_active_terms_reported():
    loss = CompositeLoss(cosine=0.5, mse=0.0, infonce=0.2, moment=0.3, variance=0.1)
    total, terms = loss(_randn(8, 6, seed=7), _randn(8, 6, seed=8))
    assert set(terms) == {"cosine", "infonce", "moment", "variance"}
    expected = 0.5 * terms["cosine"] + 0.2 * terms["infonce"] + 0.3 * terms["moment"] + 0.1 * terms["variance"]
    assert float(total) == pytest.approx(expected, rel=1e-5)
    assert all(isinstance(v, float) for v in terms.values())


def test_gradient_flows_to_pred_only_for_every_term():
    for name in TERMS:
        loss = CompositeLoss(**{"cosine": 0.0, name: 1.0})
        pred = _randn(8, 6, seed=9).requires_grad_()
        target = _randn(8, 6, seed=10).requires_grad_()
        total, _ = loss(pred, target)
        total.backward()
        assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0, name
        assert target.grad is None, name


def test_collapsed_batch_gives_finite_gradients():
    loss = CompositeLoss(cosine=1.0, moment=1.0, variance=1.0, infonce=1.0)
    pred = torch.ones(8, 6, requires_grad=True)
    total, _ = loss(pred, _randn(8, 6))
    total.backward()
    assert torch.isfinite(total) and torch.isfinite(pred.grad).all()


def test_bf16_autocast():
    loss = CompositeLoss(**LOSS_PRESETS["composite_seed"], )
    lin = torch.nn.Linear(6, 6)
    x, t = _randn(8, 6, seed=11), _randn(8, 6, seed=12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pred = lin(x)
        assert pred.dtype == torch.bfloat16
        total, terms = loss(pred, t)
    assert total.dtype == torch.float32 and torch.isfinite(total)
    total.backward()
    assert torch.isfinite(lin.weight.grad).all()
    ref_total, ref_terms = loss(lin(x).float(), t)
    for k in terms:
        assert terms[k] == pytest.approx(ref_terms[k], rel=0.05, abs=0.02)


@pytest.mark.parametrize("kwargs", [{"cosine": -1.0}, {"cosine": 0.0}, {"mse": float("nan")},
                                    {"temperature": 0.0}, {"infonce": "1"}])
def test_invalid_weights_rejected(kwargs):
    with pytest.raises(ValueError):
        CompositeLoss(**kwargs)


def test_shape_mismatch_rejected():
    with pytest.raises(ValueError):
        CompositeLoss()(torch.zeros(2, 3), torch.zeros(2, 4))


def test_presets_build_and_roundtrip():
    assert {"cosine", "mse", "infonce", "composite_seed", "default"} <= set(LOSS_PRESETS)
    for name in LOSS_PRESETS:
        loss = CompositeLoss.from_config(name)
        again = CompositeLoss.from_config(loss.config())
        assert again.config() == loss.config()
        total, terms = loss(_randn(4, 5), _randn(4, 5, seed=1))
        assert torch.isfinite(total) and terms
    assert CompositeLoss.from_config("infonce").active == ("infonce",)
    assert CompositeLoss.from_config(None).config() == CompositeLoss.from_config("default").config()
    with pytest.raises(ValueError, match="unknown loss preset"):
        CompositeLoss.from_config("nope")


def test_hard_negatives_enter_the_prediction_rows_only_and_masked_ones_do_not_count():
    """With one extra negative per row: equal to the true target it raises the loss (a tie); masked, the loss is
    the plain in-batch InfoNCE; the target->pred direction never sees them."""
    loss = CompositeLoss(cosine=0.0, infonce=1.0, temperature=0.1, hard_negatives=1)
    plain = CompositeLoss(cosine=0.0, infonce=1.0, temperature=0.1)
    e = _randn(6, 16, seed=3)
    t = e + 0.1 * _randn(6, 16, seed=4)
    base = plain(e, t)[1]["infonce"]
    neg = t[:, None, :].clone()                       # the hardest negative: the target itself
    harder = loss(e, t, neg, torch.ones(6, 1, dtype=torch.bool))[1]["infonce"]
    assert harder > base + 0.3                        # each row now has a tie with its own target: + ~ln 2 / 2
    masked = loss(e, t, neg, torch.zeros(6, 1, dtype=torch.bool))[1]["infonce"]
    assert masked == pytest.approx(base, rel=1e-6)
    far = loss(e, t, -t[:, None, :], None)[1]["infonce"]  # an opposite vector is an easy negative: loss barely moves
    assert base <= far < base + 0.01


def test_hard_negatives_need_the_infonce_term():
    with pytest.raises(ValueError, match="hard_negatives"):
        CompositeLoss(cosine=1.0, hard_negatives=2)
    with pytest.raises(ValueError, match="hard_negatives"):
        CompositeLoss(cosine=0.0, infonce=1.0, hard_negatives=-1)
    assert CompositeLoss.from_config("retrieval").config()["hard_negatives"] == 4
