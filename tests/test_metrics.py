import math

import numpy as np
import pytest

from lvm.data.table import gather_windows
from lvm.evaluation import baselines as metrics
from lvm.evaluation.baselines import fit_baselines, fit_ridge
from lvm.evaluation.metrics import (
    cosine,
    direction_margin,
    evaluate,
    evaluate_baselines,
    per_example_cosine,
    retrieval,
    score,
)


def _stack(articles, context):
    """Articles (lists of [L, D] arrays) -> (vectors, targets of every window, first row of each article)."""
    vectors = np.concatenate(articles).astype(np.float32)
    starts = np.cumsum([0] + [len(a) for a in articles])[:-1]
    targets = np.concatenate([s + np.arange(context, len(a)) for s, a in zip(starts, articles)])
    return vectors, targets.astype(np.int64), starts


def _rotation(dim, seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, dim)))
    return q


def _linear_articles(n_articles, length, dim, seed=0):
    A = _rotation(dim, seed)
    rng = np.random.default_rng(seed + 1)
    arts = []
    for _ in range(n_articles):
        v = rng.normal(size=dim)
        v /= np.linalg.norm(v)
        rows = []
        for _ in range(length):
            rows.append(v)
            v = A @ v
        arts.append(np.array(rows))
    return arts


# ------------------------------------------------------------------------------------------------ basics

def test_cosine_known_values():
    a = np.array([[1, 0], [0, 2], [1, 1], [0, 0]], dtype=np.float32)
    b = np.array([[2, 0], [1, 0], [-1, -1], [1, 0]], dtype=np.float32)
    np.testing.assert_allclose(per_example_cosine(a, b), [1, 0, -1, 0], atol=1e-7)   # zero vector scores 0
    assert cosine(a, b) == pytest.approx(0.0)
    assert isinstance(cosine(a, b), float)
    with pytest.raises(ValueError):
        per_example_cosine(a, b[:, :1])


def test_gather_matches_index_convention():
    vectors = np.arange(10, dtype=np.float32)[:, None].repeat(3, 1)
    ctx, tgt = gather_windows(vectors, np.array([3, 7]), 3)
    assert ctx.shape == (2, 3, 3) and tgt.shape == (2, 3)
    np.testing.assert_array_equal(ctx[:, :, 0], [[0, 1, 2], [4, 5, 6]])
    np.testing.assert_array_equal(tgt[:, 0], [3, 7])
    with pytest.raises(ValueError):
        gather_windows(vectors, np.array([2]), 3)


def test_direction_margin_sign():
    rng = np.random.default_rng(0)
    tgt, last = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    assert direction_margin(tgt, tgt, last) > 0          # predicts the answer
    assert direction_margin(last, tgt, last) < 0         # copies its input
    e = np.eye(3)
    assert direction_margin(e[:1], e[:1], e[1:2]) == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------- baselines

def test_last_context_scores_one_when_next_equals_last():
    rng = np.random.default_rng(1)
    arts = [np.repeat(rng.normal(size=(1, 6)), 8, 0) for _ in range(5)]   # each article one repeated vector
    vectors, targets, _ = _stack(arts, 3)
    base = fit_baselines(vectors, targets[:12], 3)
    res = evaluate_baselines(base, vectors, targets[12:], np.arange(len(vectors)), 3)
    assert res["last_context"]["cosine"] == pytest.approx(1.0)
    assert res["context_mean"]["cosine"] == pytest.approx(1.0)
    assert res["last_context"]["direction_margin"] == pytest.approx(0.0, abs=1e-6)
    assert res["global_mean"]["cosine"] < 0.9


def test_ridge_learns_linear_dynamics_primal():
    C, D = 2, 6
    vectors, targets, _ = _stack(_linear_articles(12, 15, D), C)     # 156 windows >= C*D = 12: primal
    train, val = targets[:117], targets[117:]                        # last 3 articles held out
    base = fit_baselines(vectors, train, C)
    res = evaluate_baselines(base, vectors, val, np.arange(117 + 2 * 9, len(vectors)), C)
    assert res["ridge"]["cosine"] > 0.999
    assert res["ridge"]["hit@1"] == 1.0
    assert res["ridge"]["cosine"] > max(r["cosine"] for k, r in res.items() if k != "ridge")
    info = base["ridge"].info
    assert info["relative_alpha"] in metrics.RIDGE_ALPHAS and info["holdout_cosine"]


def test_ridge_learns_linear_dynamics_dual():
    C, D = 3, 8
    vectors, targets, _ = _stack(_linear_articles(8, 6, D, seed=3), C)  # 20 train windows < C*D = 24: dual
    ridge = fit_ridge(vectors, targets[:20], C)
    ctx, tgt = gather_windows(vectors, targets[20:], C)
    assert cosine(ridge.predict(ctx), tgt) > 0.98


@pytest.mark.parametrize("n", [40, 10])   # primal (n >= p) and dual (n < p)
def test_ridge_path_equals_direct_solution(n):
    C, D = 2, 6
    rng = np.random.default_rng(n)
    vectors = rng.normal(size=(n + C, D)).astype(np.float32)
    targets = np.arange(C, n + C)
    ctx, y = gather_windows(vectors, targets, C)
    X = ctx.reshape(n, -1).astype(np.float64)
    y = y.astype(np.float64)
    Xc, yc = X - X.mean(0), y - y.mean(0)
    (W, b, a), = metrics._ridge_path(vectors, targets, C, [0.1])
    assert a == pytest.approx(0.1 * np.trace(Xc.T @ Xc) / X.shape[1])
    W_ref = np.linalg.solve(Xc.T @ Xc + a * np.eye(X.shape[1]), Xc.T @ yc)
    np.testing.assert_allclose(W, W_ref, atol=1e-8)
    np.testing.assert_allclose(b, y.mean(0) - X.mean(0) @ W_ref, atol=1e-8)


def test_baselines_use_training_rows_only():
    C = 2
    vectors, targets, starts = _stack(_linear_articles(6, 10, 5, seed=4), C)
    train, val = targets[targets < starts[4]], targets[targets >= starts[4]]
    base = fit_baselines(vectors, train, C, ridge_alpha=1e-3)
    np.testing.assert_allclose(base["global_mean"].predict(np.zeros((2, C, 5)))[0],
                               vectors[train].mean(0), rtol=1e-6, atol=1e-7)
    poisoned = vectors.copy()
    poisoned[starts[4]:] = 100.0 * np.random.default_rng(0).normal(size=poisoned[starts[4]:].shape)
    base2 = fit_baselines(poisoned, train, C, ridge_alpha=1e-3)
    ctx, _ = gather_windows(vectors, val, C)
    for name in base:
        np.testing.assert_array_equal(base[name].predict(ctx), base2[name].predict(ctx), err_msg=name)
        assert base[name].name == name
    assert base["ridge"].info["relative_alpha"] == 1e-3


# --------------------------------------------------------------------------------------------- retrieval

def _angles(*deg):
    r = np.radians(deg)
    return np.stack([np.cos(r), np.sin(r)], 1).astype(np.float32)


# rows at these angles; every score below is cos(angle difference)
ROWS = _angles(10, 0, 5, 20, 30, 15)


def test_retrieval_known_ranks_with_context_exclusion():
    targets = np.array([3, 5, 4])          # contexts (C=2): rows 1,2 / 3,4 / 2,3
    pred = _angles(0, 15, 0)
    # query 0: rows 1,2 (closest) are its context and excluded; rows 0 (10°), 5 (15°) beat 20° -> rank 3
    # query 1: exact -> rank 1;  query 2: rows 1, 0, 5 beat 30° (2, 3 excluded) -> rank 4
    res = retrieval(pred, targets, np.arange(6), ROWS, 2)
    assert res["hit@1"] == pytest.approx(1 / 3)
    assert res["hit@5"] == pytest.approx(1.0)
    assert res["mrr"] == pytest.approx((1 / 3 + 1 + 1 / 4) / 3)
    # without exclusion (context 0) query 0 would rank 5: rows 1, 2, 0, 5 beat it... check a single query
    assert retrieval(pred[:1], targets[:1], np.arange(6), ROWS, 0)["mrr"] == pytest.approx(1 / 5)


def test_retrieval_chunking_bank_subset_and_ties():
    targets = np.array([3, 5, 4])
    pred = _angles(0, 15, 0)
    full = retrieval(pred, targets, np.arange(6), ROWS, 2)
    assert retrieval(pred, targets, np.arange(6)[::-1], ROWS, 2, chunk_elems=1) == full   # 1 query per chunk
    # bank without row 0: query 0 -> rank 2, query 2 -> rank 3 (context rows 1,2 outside/inside the bank is fine)
    res = retrieval(pred, targets, np.array([1, 2, 3, 4, 5]), ROWS, 2)
    assert res["mrr"] == pytest.approx((1 / 2 + 1 + 1 / 3) / 3)
    # a duplicate of the true row ties with it and counts against the prediction (rank 4, not 3)
    dup = np.concatenate([ROWS, ROWS[3:4]])
    assert retrieval(pred[:1], targets[:1], np.arange(7), dup, 2)["mrr"] == pytest.approx(1 / 4)
    with pytest.raises(ValueError, match="not in bank_rows"):
        retrieval(pred, targets, np.array([0, 1, 2, 3]), ROWS, 2)


def test_retrieval_perfect_predictions_on_random_bank():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 16)).astype(np.float32)
    targets = np.arange(3, 50)
    res = retrieval(vectors[targets] * 2.0, targets, np.arange(50), vectors, 3)
    assert res == {"hit@1": 1.0, "hit@5": 1.0, "mrr": 1.0}


def test_retrieval_cannot_be_fooled_by_zero_or_nan_predictions():
    """Ties count against the prediction: an all-zero prediction ties with every row and ranks last; a nan row
    scores 0 (it used to give hit@1 = hit@5 = MRR = 1.0)."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(40, 16)).astype(np.float32)
    targets = np.arange(3, 40)
    zero = retrieval(np.zeros((len(targets), 16)), targets, np.arange(40), vectors, 3)
    assert zero["hit@1"] == zero["hit@5"] == 0.0 and zero["mrr"] == pytest.approx(1 / 37)  # 36 ties
    nan = np.full((len(targets), 16), np.nan)
    assert retrieval(nan, targets, np.arange(40), vectors, 3) == {"hit@1": 0.0, "hit@5": 0.0, "mrr": 0.0}
    half = vectors[targets].copy()
    half[::2] = np.nan
    res = score(half, vectors, targets, np.arange(40), 3)
    assert res["nonfinite"] == pytest.approx(19 / 37) and res["hit@1"] == pytest.approx(18 / 37)
    assert res["cosine"] == pytest.approx(18 / 37) and math.isfinite(res["direction_margin"])


def test_article_baselines_see_the_whole_article_so_far():
    from lvm.evaluation.metrics import article_starts, predict_rows, window_batch

    rng = np.random.default_rng(1)
    position = np.concatenate([np.arange(9), np.arange(7)])
    vectors = rng.normal(size=(16, 8)).astype(np.float32)
    starts = article_starts(position)
    targets = np.flatnonzero(position >= 2)
    base = fit_baselines(vectors, targets, 2, starts=starts)
    assert {"article_mean", "article_blend"} <= set(base) and base["article_blend"].needs_article
    pred = predict_rows(base["article_mean"], vectors, targets, 2, starts, batch_size=3)
    for t, p in zip(targets, pred):
        np.testing.assert_allclose(p, vectors[starts[t]:t].mean(0), atol=1e-5)
    w = window_batch(vectors, np.array([12]), 2, starts)   # article 2 starts at row 9: rows 9 before rows 10, 11
    assert w.before_n.tolist() == [1] and np.allclose(w.before_sum[0], vectors[9])
    assert 0.0 <= base["article_blend"].info["weight"] <= 1.0
    # without the article structure they are left out, and asking one for a bare context is a clear error
    assert set(fit_baselines(vectors, targets, 2)) == {"global_mean", "last_context", "context_mean", "ridge"}
    with pytest.raises(ValueError, match="starts"):
        base["article_mean"].predict(gather_windows(vectors, targets, 2)[0])


# --------------------------------------------------------------------------------------------- evaluate

def test_evaluate_flat_dict_and_batching():
    C = 2
    vectors, targets, starts = _stack(_linear_articles(6, 10, 5, seed=5), C)
    val = targets[targets >= starts[4]]
    bank = np.arange(starts[4], len(vectors))
    base = fit_baselines(vectors, targets[targets < starts[4]], C)
    big = evaluate(base["ridge"].predict, vectors, val, bank, C)
    small = evaluate(base["ridge"].predict, vectors, val, bank, C, batch_size=3)
    assert set(big) == {"cosine", "hit@1", "hit@5", "mrr", "direction_margin", "nonfinite", "n"}
    assert big["n"] == len(val) == 16
    for k in big:
        assert big[k] == pytest.approx(small[k], abs=1e-6)
        assert isinstance(big[k], int if k == "n" else float)
    ctx, tgt = gather_windows(vectors, val, C)
    assert big["cosine"] == pytest.approx(cosine(base["ridge"].predict(ctx), tgt), abs=1e-6)
    last = evaluate(base["last_context"].predict, vectors, val, bank, C)
    assert last["direction_margin"] < 0 < big["direction_margin"]
    assert math.isfinite(last["mrr"])
    with pytest.raises(ValueError, match="shape"):
        evaluate(lambda c: c[:, 0, :2], vectors, val, bank, C)


def test_paired_difference_known_cases():
    from lvm.evaluation.metrics import paired_difference

    groups = np.repeat(np.arange(10), 5)
    b = np.random.default_rng(0).random(50)
    same = paired_difference(b + 0.1, b, groups)
    assert same["diff"] == pytest.approx(0.1) and same["ci95"] == pytest.approx([0.1, 0.1])
    assert same["groups"] == 10 and same["n"] == 50
    # one article carries the whole effect: the mean is positive but resampling articles can leave it out,
    # so the interval reaches 0; resampling windows would have hidden that
    d = np.where(groups == 3, 1.0, 0.0)
    lumpy = paired_difference(d, np.zeros(50), groups)
    assert lumpy["diff"] == pytest.approx(0.1) and lumpy["ci95"][0] == 0.0 < lumpy["ci95"][1]
    with pytest.raises(ValueError, match="group"):
        paired_difference(np.ones(3), np.zeros(3), np.arange(2))


def test_windows_scattered_over_a_big_table_sum_their_article_per_article():
    """A sample of windows across a big table gets the same article summaries as consecutive batches, without a
    cumulative sum over the whole table."""
    from lvm.evaluation.metrics import article_starts, window_batch

    rng = np.random.default_rng(0)
    lengths = rng.integers(8, 40, size=600)
    position = np.concatenate([np.arange(n) for n in lengths])
    vectors = rng.normal(size=(len(position), 8)).astype(np.float32)
    starts = article_starts(position)
    targets = np.flatnonzero(position >= 3)
    sample = np.sort(rng.choice(targets, 40, replace=False))  # span ~ the table: the per-article path
    one_by_one = [window_batch(vectors, np.array([t]), 3, starts) for t in sample]
    scattered = window_batch(vectors, sample, 3, starts)
    assert np.allclose(scattered.before_sum, np.concatenate([w.before_sum for w in one_by_one]))
    assert np.array_equal(scattered.before_n, np.concatenate([w.before_n for w in one_by_one]))


def test_an_interval_reads_every_stored_form_and_formats_itself():
    from lvm.util.interval import Interval

    lead = Interval.of({"diff": 0.0089, "ci95": [0.0083, 0.0097], "groups": 118, "n": 37794})
    assert str(lead) == "+0.0089 [+0.0083, +0.0097]" and lead.above(0.0) and not lead.above(0.009)
    drop = Interval.of({"drop": -0.002, "ci95": [-0.004, 0.001], "groups": 9, "n": 300})
    assert drop.format(3, "95% ") == "-0.002 [95% -0.004, +0.001]" and not drop.above()
    assert str(Interval.of(None)) == "-" and not Interval.of({"diff": None, "ci95": [None, None]}).known
    assert Interval.of(lead.to_dict()) == lead
    from lvm.evaluation.metrics import paired_difference

    d = paired_difference(np.array([0.5, 0.6, 0.7, 0.4]), np.array([0.4, 0.5, 0.5, 0.4]), np.array([0, 0, 1, 1]),
                          n_boot=50)
    assert Interval.of(d).diff == pytest.approx(0.1) and Interval.of(d).groups == 2
