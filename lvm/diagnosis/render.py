"""A diagnosis as a person reads it: plots, report.md, a standalone report.html and diagnosis.json.

The report is written once as Markdown (what a Prefect markdown artifact shows); the HTML page is that Markdown
rendered by markdown-it-py with the images embedded as data: URIs, so the two never disagree and the page needs
nothing from elsewhere. Plots use matplotlib's Agg canvas without pyplot (no global state: safe in threads).
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import numpy as np
from markdown_it import MarkdownIt

from lvm.diagnosis.rules import COLLAPSE_SPREAD_RATIO, MAX_TRAIN_EVAL, Diagnosis, finite, loss_label
from lvm.evaluation.baselines import best_baseline
from lvm.util.interval import Interval

PLOT_DPI = 80
#: the folder of a run that holds its report when no other is named (docs/ARCHITECTURE.md, run folder).
REPORT_DIR = "report"


# ------------------------------------------------------------------------------------------------- plots

def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _figure(size):
    """A matplotlib Figure on the Agg canvas, without pyplot (no global state: safe in threads and servers)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=PLOT_DPI)
    FigureCanvasAgg(fig)
    return fig


def _plot_curves(d: Diagnosis, arch: str, path: Path) -> Path | None:
    hist = d.curves.get(arch) or []
    if not hist:
        return None
    ep = [h.get("epoch", i + 1) for i, h in enumerate(hist)]
    fig = _figure((9, 3.6))
    a1, a2 = fig.subplots(1, 2)
    for key, style in (("train_cosine", "-o"), ("val_cosine", "-s")):
        ys = [finite(h.get(key)) for h in hist]
        if any(y is not None for y in ys):
            a1.plot(ep, [np.nan if y is None else y for y in ys], style, ms=3, label=key.replace("_", " "))
    base = best_baseline(d.baselines)
    if base is not None:
        a1.axhline(base["cosine"], color="grey", ls="--", lw=1,
                   label=f"best baseline ({base['name']}, {d.eval_part})")
    mh = d.models[arch].history if arch in d.models else {}
    be = mh.get("best_epoch")
    if be is not None:
        a1.axvline(be, color="tab:green", ls=":", lw=1, label=f"best val epoch ({be})")
    if mh.get("final_gap") is not None:
        a1.annotate(f"final gap {mh['final_gap']:+.2f}", xy=(0.98, 0.04), xycoords="axes fraction", ha="right",
                    fontsize=8, bbox={"boxstyle": "round", "fc": "white", "ec": "0.7"})
    a1.set_xlabel("epoch")
    a1.set_ylabel("cosine")
    a1.set_title("cosine to the next vector")
    a1.legend(fontsize=7)
    a1.grid(alpha=0.3)

    series = {"train_loss": [finite(h.get("train_loss")) for h in hist]}
    if any(finite(h.get("val_loss")) is not None for h in hist):
        series["val_loss"] = [finite(h.get("val_loss")) for h in hist]
    for prefix in ("terms", "val_terms"):
        keys = sorted({k for h in hist for k in (h.get(prefix) or {})
                       if finite((h.get(prefix) or {}).get(k)) is not None})
        for k in keys:
            label = k if prefix == "terms" else f"val {k}"
            series[f"{label} (term)"] = [finite((h.get(prefix) or {}).get(k)) for h in hist]
    terms = [k for k in series if k.endswith("(term)") and not k.startswith("val ")]
    if len(terms) == 1 and np.allclose(np.array(series[terms[0]], dtype=float),
                                       np.array(series["train_loss"], dtype=float), equal_nan=True):
        series[f"train_loss (= {terms[0].replace(' (term)', '')} term)"] = series.pop("train_loss")
        del series[terms[0]]
    allv = [v for ys in series.values() for v in ys if v is not None]
    for label, ys in series.items():
        if any(y is not None for y in ys):
            a2.plot(ep, [np.nan if y is None else y for y in ys], "-", lw=1.5 if label.startswith("train_loss") else 1,
                    label=label.replace("_", " "))
    if allv and min(allv) > 0 and max(allv) / min(allv) > 20:
        a2.set_yscale("log")
    a2.set_xlabel("epoch")
    a2.set_ylabel("loss (unweighted terms)")
    a2.set_title("training loss and its terms")
    a2.legend(fontsize=7)
    a2.grid(alpha=0.3)
    fig.suptitle(f"run {d.run_name} - model {arch}: learning curves", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=PLOT_DPI)
    return path


def _plot_hist(d: Diagnosis, path: Path) -> Path | None:
    if not d.per_example:
        return None
    allv = np.concatenate(list(d.per_example.values()))
    lo, hi = float(np.floor(allv.min() * 10) / 10), float(np.ceil(allv.max() * 10) / 10)
    n_min = min(len(v) for v in d.per_example.values())
    bins = np.linspace(lo, max(hi, lo + 0.1), int(np.clip(n_min // 5, 10, 40)) + 1)
    fig = _figure((7.5, 4))
    ax = fig.subplots()
    for label, pe in d.per_example.items():
        is_base = label.endswith("(baseline)")
        ax.hist(pe, bins=bins, histtype="step", lw=1 if is_base else 2, ls="--" if is_base else "-",
                label=f"{label}: mean {pe.mean():.3f}")
    ax.set_xlabel(f"cosine(prediction, true next vector), per {d.eval_part} window")
    ax.set_ylabel("windows")
    ax.set_title(f"run {d.run_name}: per-example {d.eval_part} cosine, models and baselines", fontsize=10)
    ax.legend(fontsize=7, loc="best", framealpha=0.8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=PLOT_DPI)
    return path


def _plot_offsets(d: Diagnosis, path: Path) -> Path | None:
    """Cosine of each predictor's prediction to the sentence at offset k from the target; inputs shaded."""
    if not d.forward:
        return None
    fig = _figure((10.5, 4.6))
    ax = fig.subplots()
    any_f = next(iter(d.forward.values()))
    C = any_f["context"]
    ax.axvspan(-C - 0.5, -0.5, color="0.92", label=f"the {C} inputs")
    ax.axvline(0, color="0.5", lw=0.8, ls=":")
    order = sorted(d.forward, key=lambda k: k.endswith("(baseline)"))  # models first: the strong colours
    for label in order:
        f = d.forward[label]
        is_base = label.endswith("(baseline)")
        ks, ys = f["offsets"]["k"], [np.nan if y is None else y for y in f["offsets"]["cosine"]]
        fm = f["forward_margin"]["diff"]
        ax.plot(ks, ys, "--" if is_base else "-o", lw=1 if is_base else 2, ms=4,
                label=f"{label} (fwd margin {_f(fm, 3)})")
    ax.set_xticks(any_f["offsets"]["k"])
    ax.set_xlabel("offset k from the target (0 = the true next sentence, -1 = the last input)")
    ax.set_ylabel("mean cosine(prediction, sentence at k)")
    models = ", ".join(k for k in d.forward if not k.endswith("(baseline)")) or "no model"
    ax.set_title(f"run {d.run_name}: offset sweep, models {models} and baselines ({d.eval_part})", fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=PLOT_DPI)
    return path


# ------------------------------------------------------------------------------------------------- files

def write_report(d: Diagnosis, out_dir=None) -> dict:
    """Write the PNGs, report.md, report.html and diagnosis.json into out_dir (default: the run folder's report/);
    returns {name: path}, also kept in `d.files` so that the Markdown can link or embed the plots."""
    out = Path(out_dir) if out_dir is not None else Path(d.run_dir) / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for arch in d.models:
        p = _plot_curves(d, arch, out / f"learning_curves_{_safe(arch)}.png")
        if p:
            files[f"learning_curves_{arch}"] = str(p)
    p = _plot_hist(d, out / "cosine_hist.png")
    if p:
        files["cosine_hist"] = str(p)
    p = _plot_offsets(d, out / "offset_sweep.png")
    if p:
        files["offset_sweep"] = str(p)
    d.files = files
    (out / "report.md").write_text(to_markdown(d, images="link"))
    (out / "report.html").write_text(to_html(d))
    (out / "diagnosis.json").write_text(json.dumps(d.to_dict(), indent=2, default=str) + "\n")
    d.files = {**files, "report.md": str(out / "report.md"), "report.html": str(out / "report.html"),
               "diagnosis.json": str(out / "diagnosis.json")}
    return d.files


# ------------------------------------------------------------------------------------------------- markdown

def _f(x, nd=4) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return "nan" if not np.isfinite(x) else f"{x:.{nd}f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def _evidence(ev: dict) -> str:
    return ", ".join(f"{k} = {_f(v, 3)}" for k, v in ev.items() if v is not None and not isinstance(v, dict)) + \
        "".join(f", {k} = {json.dumps(v)}" for k, v in ev.items() if isinstance(v, dict) and v)


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _bullets(items: list[str]) -> str:
    return "\n".join(f"- {i}" for i in items)


def _img_src(path: str, images: str) -> str:
    if images == "embed":
        return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()
    return Path(path).name


def to_markdown(d: Diagnosis, images: str = "link") -> str:
    """The report as Markdown; images "link" (file names beside report.md), "embed" (data: URIs) or "none".
    Plots appear only once `write_report` has written them (`d.files`)."""
    b: list[str] = [f"# LVM diagnosis: run {d.run_name}", f"**{d.summary}**"]
    b.append(f"Run folder `{d.run_dir}`; held-out part: **{d.eval_part}**; verdicts are documented in "
             "`lvm/diagnosis/rules.py` with their thresholds.")
    if d.decision.get("branch"):
        b.append(f"The run's decision: **{d.decision['branch']}** - {d.decision.get('reason', '')}")
    b.append("## Findings (most important first)")
    for i, f in enumerate(d.findings, 1):
        tag = f.kind if f.problem or f.kind == "healthy" else f"{f.kind} (note)"
        b.append(f"**{i}. [{tag}] {f.title}**")
        items = [f"evidence: {_evidence(f.evidence)}"] if f.evidence else []
        items += [f"try: {r}" for r in f.recommendations]
        if items:
            b.append(_bullets(items))
    if d.failed:
        b.append("## Failed trainings")
        b.append(_bullets([f"`{k}`: {v}" for k, v in d.failed.items()]))

    b.append(f"## Models and baselines ({d.eval_part} split)")
    rows = []
    for k, m in sorted(d.models.items(), key=lambda kv: -(kv[1].test_cosine or -9)):
        if m.error:
            rows.append([f"**{k}**", "error: " + m.error.replace("|", "/")] + [""] * 7)
            continue
        rows.append([f"**{k}**", _f(m.test_cosine), _f(m.train_cosine), _f(m.val_cosine), _f(m.gap, 3),
                     _f(m.direction_margin, 3), _f(m.cos_to_last_context, 3), _f(m.spread.get("spread_ratio"), 3),
                     _f(m.spread.get("pred_pairwise_cosine"), 3)])
    for k, v in sorted(d.baselines.items(), key=lambda kv: -kv[1]["cosine"]):
        rows.append([f"{k} (baseline)", _f(v["cosine"]), "", "", "", _f(v["direction_margin"], 3), "", "", ""])
    b.append(_table(["", "test cosine", "train cosine", "val cosine", "gap", "direction margin",
                     "cos(pred, last ctx)", "spread ratio", "pred pairwise cos"], rows))
    tpc = next((m.spread.get("target_pairwise_cosine") for m in d.models.values() if m.spread), None)
    b.append("train/val cosine: the saved model in eval mode (train: up to "
             f"{MAX_TRAIN_EVAL:,} sampled windows). Spread ratio: mean per-dimension std of the unit "
             f"predictions over that of the targets (collapse below {COLLAPSE_SPREAD_RATIO}). "
             f"Targets' mean pairwise cosine: {_f(tpc, 3)}.")

    if d.forward:
        b.append(f"## Does it predict forward? ({d.eval_part} split)")
        rows = []
        for k in sorted(d.forward, key=lambda k: k.endswith("(baseline)")):  # models first
            f = d.forward[k]
            ab, fm, lg = f["ablations"], f["forward_margin"], f["gain_over_last_input"]
            roll = f["rollout"]["cosine"]
            rows.append([k if k.endswith("(baseline)") else f"**{k}**", _f(f["cosine"]),
                         Interval.of(fm).format(3),
                         _f(lg["diff"]), _f(ab["shuffled"]["drop"]), _f(ab["reversed"]["drop"]),
                         _f(ab["mean"]["drop"]), _f(roll[-1] if roll else None),
                         _f(f["contrastive_accuracy"]), _f(f["paraphrase_ratio"], 3)])
        b.append(_table(["", "cosine", "forward margin [95%]", "gain over last input", "shuffled drop",
                         "reversed drop", "mean drop", f"rollout {len(roll) if roll else ''}",
                         "contrastive acc.", "paraphrase ratio"], rows))
        b.append("Forward margin: cos(pred, next) - cos(pred, the sentence before the context), both unseen "
                 "(about 0 for a topic-only predictor). Drops: cosine lost when the context is shuffled, "
                 "reversed or replaced by its mean (0 = order plays no part). Rollout: cosine to the true "
                 "k-th next sentence with the predictions fed back. Contrastive accuracy: 0.5 = chance; "
                 "paraphrase ratio above 1: nearer its input than real next sentences are.")

    b.append("## Training")
    rows = []
    for k, m in d.models.items():
        h = m.history
        rows.append([f"**{k}**", _f(m.parameters), "yes" if m.residual else "no", loss_label(m.loss),
                     _f(h.get("epochs")), _f(h.get("best_epoch")), _f(h.get("best_val_cosine")),
                     _f(h.get("final_train_cosine")), _f(h.get("final_val_cosine")),
                     _f(h.get("peaked_early")), _f(h.get("still_improving"))])
    b.append(_table(["model", "parameters", "residual", "loss", "epochs", "best epoch", "best val cos",
                     "final train cos", "final val cos", "val peaked early", "still improving"], rows))

    b.append("## Data")
    ds = d.data
    wps, aps = ds.get("windows_per_split", {}), ds.get("articles_per_split", {})
    b.append(_table(["articles", "sentences", "D", "encoder", "mean-vector norm", "duplicate rate",
                     "train windows", "val windows", "test windows"],
                    [[_f(ds.get("articles")), _f(ds.get("sentences")), _f(ds.get("dim")), _f(ds.get("encoder")),
                      _f(ds.get("mean_vector_norm"), 3), _f(ds.get("duplicate_rate"), 3),
                      f"{_f(wps.get('train'))} ({aps.get('train', '-')} art.)",
                      f"{_f(wps.get('val'))} ({aps.get('val', '-')} art.)",
                      f"{_f(wps.get('test'))} ({aps.get('test', '-')} art.)"]]))

    if images != "none" and d.files:
        b.append("## Plots")
        for name, path in d.files.items():
            if path.endswith(".png"):
                b.append(f"![{name.replace('_', ' ')}]({_img_src(path, images)})")
    return "\n\n".join(b) + "\n"


def markdown_with_images(d: Diagnosis) -> str:
    """report.md with every PNG embedded as a data: URI (for a Prefect markdown artifact)."""
    return to_markdown(d, images="embed")


# ------------------------------------------------------------------------------------------------- html

# Raw HTML stays text: run names, paths and error messages go into the page as they are.
_MD = MarkdownIt("commonmark", {"html": False}).enable("table")
_STYLE = ("body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em;line-height:1.4}"
          "table{border-collapse:collapse;margin:1em 0;font-size:90%}td,th{border:1px solid #ccc;padding:.25em .5em;"
          "text-align:right}td:first-child,th:first-child{text-align:left}code{background:#f4f4f4;padding:0 .2em}"
          "img{max-width:100%}")


def to_html(d: Diagnosis) -> str:
    """A standalone HTML page: the embedded-image Markdown rendered by markdown-it-py (CommonMark and tables)."""
    body = _MD.render(markdown_with_images(d))
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(f'LVM diagnosis: {d.run_name}')}"
            f"</title><style>{_STYLE}</style></head><body>\n{body}</body></html>\n")
