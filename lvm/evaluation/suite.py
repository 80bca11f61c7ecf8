"""Every held-out measure of every predictor in one pass over the windows: the metrics of lvm.evaluation.metrics and
the forward suite whose measures lvm.evaluation.forward defines, with the same numbers as before, made fast.

What makes it fast, and what it keeps:
- One loop over batches of windows, every predictor inside it: the windows, their article summaries and the
  shuffles are built once per batch for all predictors, and only per-window numbers are kept (cosines, ranks,
  shares), never a [windows, D] array per pass, so memory does not grow with the passes.
- An ensemble whose members are scored beside it (lvm.evaluation.predictors.SavedModel.member_keys) is not run
  again: its prediction is `combine` of its members' predictions for the same windows, which is exactly how it
  predicts anywhere (the server included). Only its rollout, which feeds its own predictions back, runs it.
- The order tests (three ablations, a 5-step rollout: 8 of the ~10 prediction passes of a model) run on a seeded
  sample: the shuffled context, which a deploy gate reads, on at most ``ORDER_WINDOWS`` windows, the reversed and
  mean-replaced context and the rollout on at most ``DETAIL_WINDOWS`` of those, each with its interval; on a set
  that small or smaller they run on every window, as before. The rollout's first step is the plain prediction.
- Retrieval (hit@k, MRR, contrastive accuracy) ranks each window's prediction against the whole bank: windows x
  bank scores, quadratic in the set's size. Above ``RETRIEVAL_WINDOWS`` windows they are measured on a seeded
  sample of that many windows (against the whole bank; the result says how many in `retrieval_windows`); cosine,
  the margins and the intervals always use every window.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from lvm.evaluation.forward import (
    ABLATIONS,
    AFTER,
    ROLLOUT_STEPS,
    _ablate,
    _rollout_step,
    sentence_before,
    summary,
    without_before,
)
from lvm.evaluation.heldout import HeldOutSet
from lvm.evaluation.metrics import Bank, Windows, _normalize, nonfinite_rows, paired_difference, per_example_cosine
from lvm.evaluation.predictors import combine

ORDER_WINDOWS = 4096   # the shuffled context (a deploy gate) runs on at most this many sampled windows
DETAIL_WINDOWS = 1024  # the reversed and mean-replaced context and the rollout (read, not gated) on at most these
RETRIEVAL_WINDOWS = 16384  # hit@k, MRR and contrastive accuracy on at most this many sampled windows


class _Acc:
    """Per-window numbers of one predictor."""

    def __init__(self, n: int, n_order: int, offsets: list[int]):
        z = np.zeros
        self.cos_next, self.cos_last, self.cos_before = z(n), z(n), z(n)
        self.cos_next_unseen, self.cos_before_unseen = z(n), z(n)
        self.rank, self.contrast, self.bad = np.ones(n, np.int64), z(n), np.zeros(n, bool)
        self.off_sum, self.off_n = dict.fromkeys(offsets, 0.0), dict.fromkeys(offsets, 0)
        self.close_pred = 0.0
        self.ablation = {k: z(n_order) for k in ABLATIONS}
        self.roll = z(ROLLOUT_STEPS)
        self.seconds = 0.0


def score_predictors(predictors: dict[str, Callable], held: HeldOutSet, *, seed: int = 0, n_boot: int = 2000,
                     order_tests: bool = True, order_windows: int | None = ORDER_WINDOWS, batch_size: int = 4096,
                     retrieval_windows: int | None = RETRIEVAL_WINDOWS,
                     log: Callable[[str], None] | None = None) -> tuple[dict, dict]:
    """(metrics {name: score's flat dict + the forward suite's columns + "forward": the suite},
    cosines {name: cos(prediction, next) per window}) for ``Windows`` predictors on `held`.
    order_windows=None: the order tests on every window; retrieval_windows=None: retrieval on every window."""
    t0 = time.perf_counter()
    vectors, targets, C = held.vectors, held.targets, held.context
    starts, ends = held.starts, held.ends
    n = len(targets)
    bank = Bank(vectors, held.bank, C)
    bank_col = bank.columns(targets)
    chunk = max(1, (1 << 24) // max(len(bank.rows), 1))  # queries per ranking chunk, as metrics.retrieval has it
    names = _order(predictors)
    combos = _combos(predictors)
    reads = {k: getattr(fn, "needs_article", True) for k, fn in predictors.items()}

    rng_pick = np.random.default_rng(seed)
    if order_tests:
        pick = np.arange(n) if order_windows is None or n <= order_windows else \
            np.sort(rng_pick.choice(n, order_windows, replace=False))
    else:
        pick = np.arange(0)
    detail = np.ones(len(pick), bool)
    if order_windows is not None and len(pick) > DETAIL_WINDOWS:
        detail[:] = False
        detail[rng_pick.choice(len(pick), DETAIL_WINDOWS, replace=False)] = True
    ranked = np.ones(n, bool)  # the windows whose prediction is ranked against the bank
    if retrieval_windows is not None and n > retrieval_windows:
        ranked[:] = False
        ranked[np.random.default_rng([seed, 1]).choice(n, retrieval_windows, replace=False)] = True
    in_pick = np.full(n, -1)
    in_pick[pick] = np.arange(len(pick))
    offsets = list(range(-(C + 2), AFTER + 1))
    acc = {k: _Acc(n, len(pick), offsets) for k in names}
    close_tgt = 0.0
    stash = {k: np.zeros((len(pick), vectors.shape[1]), np.float32) for k in names}
    before_all, has_before = sentence_before(targets, C, starts)
    last_log = time.perf_counter()

    def run(name, fn, w, key, res):
        if name in combos and key is not None:
            return combine([res[m] for m in combos[name]])
        s = time.perf_counter()
        out = np.asarray(fn(w), np.float32)
        acc[name].seconds += time.perf_counter() - s
        return out

    for s in range(0, n, batch_size):
        sl = slice(s, min(s + batch_size, n))
        t = targets[sl]
        w = held.windows(t)
        tgt = vectors[t]
        tv = _normalize(tgt)
        before = vectors[np.maximum(before_all[sl], 0)]
        ctx = w.ctx
        close_tgt += np.max([per_example_cosine(tgt, ctx[:, j]) for j in range(C)], axis=0).sum()
        unseen_w = without_before(w, vectors, t, C, starts)
        plain, unseen = {}, {}
        for name in names:
            fn, a = predictors[name], acc[name]
            p = plain[name] = run(name, fn, w, "plain", plain)
            a.bad[sl] = nonfinite_rows(p)
            cn = a.cos_next[sl] = per_example_cosine(p, tgt)
            a.cos_last[sl] = per_example_cosine(p, vectors[t - 1])
            a.cos_before[sl] = per_example_cosine(p, before)
            rk = np.flatnonzero(ranked[sl])
            q = _normalize(np.where(a.bad[sl][rk, None], 0.0, p[rk]))
            for c in range(0, len(rk), chunk):  # [chunk, bank] scores at a time: memory does not grow with the bank
                r = rk[c:c + chunk]
                a.rank[s + r], a.contrast[s + r] = bank.ranks_and_contrast(q[c:c + chunk], t[r], bank_col[sl][r],
                                                                           tv[r])
            for k in offsets:
                rows = t + k
                ok = (rows >= starts[t]) & (rows < ends[t])
                if ok.any():
                    a.off_sum[k] += float(per_example_cosine(p[ok], vectors[rows[ok]]).sum())
                    a.off_n[k] += int(ok.sum())
            a.close_pred += np.max([per_example_cosine(p, ctx[:, j]) for j in range(C)], axis=0).sum()
            if reads[name]:
                pu = unseen[name] = run(name, fn, unseen_w, "unseen", unseen)
                a.cos_next_unseen[sl] = per_example_cosine(pu, tgt)
                a.cos_before_unseen[sl] = per_example_cosine(pu, before)
            else:
                a.cos_next_unseen[sl], a.cos_before_unseen[sl] = cn, a.cos_before[sl]
            here = in_pick[sl]
            stash[name][here[here >= 0]] = p[here >= 0]
        if log and time.perf_counter() - last_log > 30:
            last_log = time.perf_counter()
            log(f"scored {sl.stop:,} / {n:,} windows, {sl.stop / (last_log - t0):.0f} windows/s")

    if len(pick):
        _order_tests(predictors, names, held, pick, detail, stash, acc, seed, batch_size, run)
    metrics = {name: _finish(acc[name], held, pick, detail, ranked, offsets, close_tgt, n_boot, seed, reads[name],
                             order_tests)
               for name in predictors}
    if log:
        took = time.perf_counter() - t0
        log(f"scored {len(predictors)} predictors on {n:,} windows ({len(pick):,} with the order tests) in "
            f"{took:.1f} s, {n / took:.0f} windows/s; prediction seconds: " +
            ", ".join(f"{k} {acc[k].seconds:.1f}" for k in names if acc[k].seconds > 0.05))
    return metrics, {k: acc[k].cos_next for k in predictors}


def forward_suite(predict_fn: Callable[[Windows], np.ndarray], vectors: np.ndarray, targets: np.ndarray,
                  bank_rows: np.ndarray, context: int, starts: np.ndarray, groups: np.ndarray | None = None,
                  seed: int = 0, batch_size: int = 4096, n_boot: int = 2000, order_tests: bool = True,
                  order_windows: int | None = None, retrieval_windows: int | None = None) -> dict:
    """Every forward measure of ``predict_fn`` on windows ``targets`` (JSON-able): lvm.evaluation.suite's one
    pass for a single predictor. ``groups``: the article of each row for the intervals (default: its start row).
    ``order_tests=False`` leaves out the ablations and the rollout; ``order_windows`` caps the windows they run on
    (None: every window), and ``retrieval_windows`` the windows ranked against the bank (None: every window)."""
    targets = np.asarray(targets, dtype=np.int64)
    if len(targets) == 0:
        raise ValueError("the forward suite needs at least one window")
    starts = np.asarray(starts, dtype=np.int64)
    held = HeldOutSet(vectors, targets, np.asarray(bank_rows), starts, starts if groups is None else
                      np.asarray(groups), int(context))
    metrics, _ = score_predictors({"p": predict_fn}, held, seed=seed, n_boot=n_boot, order_tests=order_tests,
                                  order_windows=order_windows, retrieval_windows=retrieval_windows,
                                  batch_size=batch_size)
    return metrics["p"]["forward"]


def _order(predictors: dict) -> list[str]:
    """Predictors that combine others come after them."""
    combos = _combos(predictors)
    return [k for k in predictors if k not in combos] + [k for k in predictors if k in combos]


def _combos(predictors: dict) -> dict[str, list[str]]:
    """{ensemble: [its members' names]} for every ensemble whose members are all among the predictors."""
    by_key = {getattr(fn, "key", None): k for k, fn in predictors.items() if getattr(fn, "key", None)}
    out = {}
    for k, fn in predictors.items():
        members = getattr(fn, "member_keys", None)
        if members and all(m in by_key for m in members) and \
                all(fn.member_is(i, predictors[by_key[m]]) for i, m in enumerate(members)):
            out[k] = [by_key[m] for m in members]
    return out


def _order_tests(predictors, names, held, pick, detail, stash, acc, seed, batch_size, run) -> None:
    """The ablations and the rollout on the picked windows (every window of a small set): the shuffled context on
    all of them, the rest on the `detail` ones."""
    vectors = held.vectors
    targets = held.targets[pick]
    rng = np.random.default_rng(seed)
    for s in range(0, len(targets), batch_size):
        sl = slice(s, s + batch_size)
        t = targets[sl]
        w = held.windows(t)
        tgt = vectors[t]
        few = detail[sl]
        for k in ABLATIONS:  # the shuffle draws for the whole batch, as before, whatever is kept
            ctx = _ablate(w.ctx, k, rng)
            keep = slice(None) if k == "shuffled" or few.all() else few
            wk = Windows(np.ascontiguousarray(ctx[keep]), None if w.before_sum is None else w.before_sum[keep],
                         None if w.before_n is None else w.before_n[keep])
            res = {}
            for name in names:
                res[name] = run(name, predictors[name], wk, k, res)
                acc[name].ablation[k][np.arange(s, s + len(t))[keep]] = per_example_cosine(res[name], tgt[keep])
    full = np.nonzero((targets + ROLLOUT_STEPS - 1 < held.ends[targets]) & detail)[0]
    for s in range(0, len(full), batch_size):
        idx = full[s:s + batch_size]
        t = targets[idx]
        start = held.windows(t)  # once per batch, for every predictor
        for name in names:
            a, w = acc[name], start
            a.roll_n = len(full)
            out = stash[name][idx]
            for j in range(ROLLOUT_STEPS):
                if j:
                    out = run(name, predictors[name], w, None, {})
                a.roll[j] += per_example_cosine(out, vectors[t + j]).sum()
                w = _rollout_step(w, out)


def _finish(a: _Acc, held: HeldOutSet, pick, detail, ranked, offsets, close_tgt, n_boot, seed, reads_article,
            order_tests) -> dict:
    vectors, targets, C = held.vectors, held.targets, held.context
    n = len(targets)
    groups = held.target_groups
    bad = a.bad
    rank, bad_r = a.rank[ranked], bad[ranked]
    score = {"cosine": float(a.cos_next.mean()),
             "hit@1": float(((rank <= 1) & ~bad_r).mean()), "hit@5": float(((rank <= 5) & ~bad_r).mean()),
             "mrr": float(np.where(bad_r, 0.0, 1.0 / rank).mean()), "retrieval_windows": int(ranked.sum()),
             "direction_margin": float((a.cos_next - a.cos_last).mean()),
             "nonfinite": float(bad.mean()), "n": int(n)}
    _, has_before = sentence_before(targets, C, held.starts)

    def margin(cos_q, other, ok):
        if not ok.any():
            return {"diff": None, "ci95": [None, None], "groups": 0, "n": 0}
        return paired_difference(cos_q[ok], other[ok], groups[ok], n_boot=n_boot, seed=seed)

    served = margin(a.cos_next, a.cos_before, has_before)
    fwd = margin(a.cos_next_unseen, a.cos_before_unseen, has_before) if reads_article else served
    everyone = np.ones(n, bool)
    direction = margin(a.cos_next, a.cos_last, everyone)
    echo = paired_difference(a.cos_next, per_example_cosine(vectors[targets - 1], vectors[targets]), groups,
                             n_boot=n_boot, seed=seed)
    ablations = {}
    if order_tests and len(pick):
        for k in ABLATIONS:
            on = slice(None) if k == "shuffled" else detail
            ca, p = a.ablation[k][on], pick[on]
            ablations[k] = {"cosine": float(ca.mean()), **{("drop" if x == "diff" else x): v for x, v in
                            paired_difference(a.cos_next[p], ca, groups[p], n_boot=n_boot, seed=seed).items()}}
    roll_n = getattr(a, "roll_n", 0)
    roll = {"steps": list(range(1, ROLLOUT_STEPS + 1)), "cosine": [float(v / roll_n) for v in a.roll] if roll_n
            else [], "n": int(roll_n)}
    sweep = {"k": offsets, "cosine": [a.off_sum[k] / a.off_n[k] if a.off_n[k] else None for k in offsets],
             "n": [a.off_n[k] for k in offsets], "input": [-C <= k <= -1 for k in offsets]}
    den = close_tgt / n
    suite = {"n": int(n), "context": C, "cosine": score["cosine"], "offsets": sweep, "forward_margin": fwd,
             "forward_margin_served": served, "direction_margin": direction, "gain_over_last_input": echo,
             "ablations": ablations, "rollout": roll, "order_windows": int(len(pick)),
             "detail_windows": int(detail.sum()),
             "contrastive_accuracy": float(np.where(bad_r, 0.0, a.contrast[ranked]).mean()),
             "paraphrase_ratio": float((a.close_pred / n) / den) if abs(den) > 1e-12 else None}
    return {**score, **summary(suite), "forward": suite}
