"""A registered version's model card (README.md in its folder): what it was trained on, how it scored against the
baselines (with intervals), the gates it was judged by, and what it is for, from version.json's own record."""

from __future__ import annotations

from lvm.util.interval import Interval


def model_card(info: dict, config: dict) -> str:
    """Markdown for version `info` (version.json's dict) of a model with config.json `config`."""
    m, lin = info.get("metrics") or {}, info.get("lineage") or {}
    held = m.get("held_out", {}).get("test", {}) if isinstance(m.get("held_out"), dict) else {}
    best = (held.get("best_baseline") or m.get("best_baseline") or {})
    lead = (held.get("vs_best_baseline") or m.get("vs_best_baseline") or {}).get("models", {})
    lead = next(iter(lead.values()), None) if lead else None
    gates = lin.get("gates") or {}
    split = lin.get("split") or config.get("split") or {}

    def num(v, fmt="{:.4f}"):
        return "-" if not isinstance(v, (int, float)) else fmt.format(v)

    rows = [f"| {k} | {num(m.get(k))} |" for k in ("cosine", "mrr", "hit@5", "forward_margin", "shuffle_drop",
                                                     "contrastive_accuracy") if k in m]
    lines = [f"# Model v{info['version']}: {info['arch']} (D={info['dim']}, context {info['context']})", "",
             "Predicts the embedding of the next sentence from the embeddings of the last "
             f"{info['context']} (and the mean of the article so far, when it reads it), in the vector space of the "
             f"encoder `{info.get('encoder')}`. Intended use: next-sentence retrieval and planning over sentence "
             "embeddings of text like its training data; it produces vectors, not text, and was not evaluated on "
             "other encoders or other kinds of text than those below.", "",
             "## Data", f"- table `{lin.get('data_path') or config.get('dataset')}` (sha256 "
             f"`{str(info.get('data_hash'))[:16]}…`), {lin.get('articles', '?')} articles",
             f"- split: {split.get('method', '?')}, seed {split.get('seed', '?')}, fractions "
             f"{split.get('fractions', '?')}", ""]
    lines += ["## Held-out scores", "| metric | value |", "|---|---:|", *rows, ""]
    if best:
        lines.append(f"Best baseline: {best.get('name')} ({num(best.get('cosine'))}); this model's lead: "
                     f"{Interval.of(lead) if lead else '-'} (95 % interval over the test articles).")
    if gates:
        lines += ["", "## Forward gates", "| gate | value | threshold | passed |", "|---|---:|---:|---|"]
        lines += [f"| {n} | {num(g.get('value'))} | {g.get('threshold')} | {'yes' if g.get('passed') else 'no'} |"
                  for n, g in gates.items()]
    lines += ["", f"Registered {info.get('created_at')} from `{info.get('source')}`"
              + (f", flow run {info['flow_run_id']}" if info.get("flow_run_id") else "") + "."]
    return "\n".join(lines) + "\n"
