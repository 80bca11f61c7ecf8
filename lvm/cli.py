"""The `lvm` command line: every command calls the same library functions the Prefect tasks call."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal, Optional

import typer

import lvm.defaults as D
from lvm.server.command import serve  # no torch: see lvm.server.command
from lvm.util.user_errors import UserErrorsGroup

app = typer.Typer(help="Latent vector models: build datasets, train, evaluate, register and serve.",
                  cls=UserErrorsGroup, no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]})


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"lvm-pipeline {version('lvm-pipeline')}")
        except PackageNotFoundError:  # run from a checkout that was never installed
            typer.echo("lvm-pipeline (not installed)")
        raise typer.Exit()


@app.callback()
def _main(show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                            help="Print the version and exit.")):
    """Latent vector models: build datasets, train, evaluate, register and serve."""

# fixed-value options are Literal types: a wrong value is refused by the parser (exit 2), before anything loads
Format = Literal["auto", "text", "wikitext", "jsonl", "builtin"]
Backend = Literal["auto", "torch", "torch-bf16", "onnx", "onnx-int8"]


def _json_option(flag: str, text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{flag} is not valid JSON ({e}): {text!r}") from None


# ---------------------------------------------------------------------------------------------------- data

_TABLE = "A sentence table: Parquet, a folder of Parquet shards, or a seed .npz (imported, cached by content)."


def _context(value: int | None, option: str = "--context") -> int:
    """The context length given, or the product's default (lvm.data.table.DEFAULT_CONTEXT) when none is."""
    if value is None:
        from lvm.data.table import DEFAULT_CONTEXT

        return DEFAULT_CONTEXT
    if value < 1:
        raise ValueError(f"{option} must be >= 1 (the number of context sentences), got {value}")
    return value


def _fractions(text: str | None) -> tuple[float, float, float]:
    if text is None:
        from lvm.data.dataset import DEFAULT_FRACTIONS

        return DEFAULT_FRACTIONS
    try:
        fr = tuple(float(x) for x in text.split(","))
    except ValueError:
        fr = ()
    if len(fr) != 3 or any(not 0 <= f <= 1 for f in fr) or abs(sum(fr) - 1) > 1e-6:
        raise ValueError(f"--fractions must be three numbers in [0, 1] summing to 1 (train,val,test), got {text!r}")
    return fr


@app.command("build-dataset")
def build_dataset_cmd(
    corpus: list[str] = typer.Option(["builtin"], help="A text file, a folder of .txt files, WikiText raw, JSONL, "
                                     "or 'builtin'; repeat to combine corpora."),
    format: Format = typer.Option("auto", "--format", help="The corpus format."),
    encoder: Optional[str] = typer.Option(None, help="sentence-transformers name or path; default: bundled "
                                          "all-MiniLM-L6-v2."),
    out: Optional[Path] = typer.Option(None, help="Where to write the sentence table (a .parquet file, or any other "
                                       "path: a folder of Parquet shards); LVM_DATA_DIR "
                                       "defaults to ./data.", show_default="$LVM_DATA_DIR/dataset.parquet"),
    cache_dir: Optional[Path] = typer.Option(None, help="Per-document embedding cache, shared with the flows.",
                                             show_default="$LVM_DATA_DIR/cache/embeddings"),
    no_cache: bool = typer.Option(False, "--no-cache", help="Embed everything again, ignoring the cache."),
    detokenize: Optional[bool] = typer.Option(None, "--detokenize/--no-detokenize",
                                              help="Undo Moses tokenisation (` , ` ` 's` ` @-@ `).",
                                              show_default="WikiText, and text that looks tokenised"),
    backend: Optional[Backend] = typer.Option(None, help="torch is the exact sentence-transformers path; auto, the "
                                              "bundled model's fastest faithful backend measured on this CPU (torch "
                                              "for others).", show_default="auto"),
):
    """Read a corpus, split it into sentences, embed them and write a validated sentence table."""
    from lvm.ingest.build import DEFAULT_CACHE, build_dataset

    summary = build_dataset(corpus, out, fmt=format, encoder=encoder,
                            cache_dir=None if no_cache else (cache_dir or DEFAULT_CACHE),
                            log=lambda m: typer.echo(m, err=True), detokenize=detokenize, backend=backend)
    typer.echo(json.dumps(summary, indent=2))


@app.command()
def inspect(
    file: Path = typer.Argument(..., help=_TABLE),
    context: Optional[int] = typer.Option(None, help="Context length used to count windows.",
                                          show_default=str(D.CONTEXT)),
    seed: int = typer.Option(0, help="Split seed."),
    fractions: Optional[str] = typer.Option(None, help="train,val,test fractions of articles.",
                                            show_default=",".join(map(str, D.FRACTIONS))),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
):
    """Articles, sentences, D, norm stats, mean-vector norm, duplicates and windows per split."""
    from lvm.data.dataset import read_table, split_articles, table_stats, warn_short_articles
    from lvm.ingest.row_checks import report_lines, table_row_report

    context = _context(context)
    fr = _fractions(fractions)
    table = read_table(file)
    warn_short_articles(table, context)
    split = split_articles(table, fr, seed)
    stats = table_stats(table, context, split)
    stats["row_checks"] = table_row_report(table.text, table.meta.get("encoder"))
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    typer.echo(f"{file}")
    for key in ("articles", "sentences", "dim", "norm_min", "norm_mean", "norm_max", "mean_vector_norm",
                "duplicate_rows", "duplicate_rate", "windows"):
        val = stats[key]
        typer.echo(f"  {key:<18} {val:.4f}" if isinstance(val, float) else f"  {key:<18} {val}")
    for part in ("train", "val", "test"):
        typer.echo(f"  {part:<18} {stats['articles_per_split'][part]} articles, "
                   f"{stats['windows_per_split'][part]} windows")
    if stats["meta"]:
        typer.echo(f"  meta               {json.dumps(stats['meta'])}")
    typer.echo("  rows that may not be one sentence:")
    for line in report_lines(stats["row_checks"]):
        typer.echo(f"    {line}")


@app.command("import-npz")
def import_npz_cmd(
    npz: Path = typer.Argument(..., help="Seed-format .npz (context_sequences, target_vectors[, target_texts])."),
    out: Path = typer.Option(..., help="Sentence table to write (Parquet)."),
):
    """Turn the original project's window file into a sentence table (stride-1 streams rebuilt)."""
    from lvm.data.dataset import write_table
    from lvm.data.seed_npz import import_npz
    from lvm.util.paths import check_output

    check_output(out, [npz])
    table = import_npz(npz)
    write_table(table, out, source=str(npz))
    typer.echo(json.dumps({"path": str(out), **table.meta}, indent=2))


@app.command("export-npz")
def export_npz_cmd(
    file: Path = typer.Argument(..., help=_TABLE),
    out: Path = typer.Option(..., help=".npz to write."),
    context: Optional[int] = typer.Option(None, help="Context length of the windows.", show_default=str(D.CONTEXT)),
):
    """Write every in-article window of a sentence table in the original project's .npz format."""
    from lvm.data.dataset import read_table
    from lvm.data.seed_npz import export_npz
    from lvm.util.paths import check_output

    context = _context(context)
    check_output(out, [file])
    export_npz(read_table(file), out, context, source=str(file))
    typer.echo(str(out))


# ---------------------------------------------------------------------------------------------------- models

@app.command()
def models(dim: int = typer.Option(768, help="Embedding width D."),
           context: Optional[int] = typer.Option(None, help="Context length C.", show_default=str(D.CONTEXT))):
    """Architectures with their parameter counts at the given D (seed configurations)."""
    from lvm.models import MODEL_NAMES, build_model, count_parameters
    from lvm.models.io import check_bounds

    context = _context(context)
    check_bounds({"dim": dim, "context": context}, "lvm models")
    typer.echo(f"{'architecture':<14}{'parameters':>14}   (D={dim}, context={context})")
    for name in MODEL_NAMES:
        typer.echo(f"{name:<14}{count_parameters(build_model(name, dim, context=context)):>14,}")


@app.command()
def train(
    arch: Optional[str] = typer.Option(None, help="lstm, gru, mamba2 or transformer.",
                                       show_default="lstm, or --init's"),
    data: Path = typer.Option(..., help=_TABLE),
    epochs: Optional[int] = typer.Option(None, show_default=str(D.EPOCHS)),
    batch_size: Optional[int] = typer.Option(None, show_default=str(D.BATCH_SIZE)),
    lr: Optional[float] = typer.Option(None, help="AdamW's learning rate.", show_default=str(D.LR)),
    context: Optional[int] = typer.Option(None, show_default=str(D.CONTEXT)),
    device: Optional[Literal["auto", "cpu", "cuda"]] = typer.Option(None, show_default="auto"),
    precision: Optional[Literal["bf16", "fp32"]] = typer.Option(None, help="bf16: autocast where the CPU runs it "
                                                                           "natively.", show_default="bf16"),
    loss: Optional[str] = typer.Option(None, help="Loss preset name or JSON weights, e.g. '{\"cosine\": 1}'."),
    article: Optional[bool] = typer.Option(None, "--article/--no-article",
                                           help="Also read the article so far (the mean of every earlier "
                                                "sentence).", show_default="on"),
    seed: int = typer.Option(0),
    out: Optional[Path] = typer.Option(None, help="Model folder (default: a new data/runs/models/<arch>-<time> "
                                                  "each run)."),
    resume: bool = typer.Option(False, help="Continue from the last checkpoint of --out."),
    init: Optional[Path] = typer.Option(None, help="A trained model folder to start from (fine-tuning, e.g. a model "
                                                   "trained at scale): same architecture, context and inputs."),
):
    """Train one architecture on the article-disjoint split; prints each epoch, then the model against baselines."""
    from lvm.models.io import read_config
    from lvm.train.config import TrainConfig
    from lvm.train.on_table import train_on_table
    from lvm.util.paths import check_output, new_model_folder, runs_dir

    arch = arch or (read_config(init)["arch"] if init else "lstm")

    given = {"epochs": epochs, "context": context, "device": device, "precision": precision, "article": article}
    fields = {"arch": arch, "seed": seed, **{k: v for k, v in given.items() if v is not None}}  # else TrainConfig's
    if batch_size:
        fields["batch_size"] = batch_size
    if lr:
        fields["lr"] = lr
    if loss:
        fields["loss"] = _json_option("--loss", loss) if loss.strip().startswith("{") else loss
    if init:
        fields["init"] = str(init)
    if resume and out is None:
        raise ValueError("--resume continues a folder: give it with --out (lvm train prints each run's folder)")
    out = check_output(out or new_model_folder(runs_dir() / "models", arch), [data], folder=True)

    cfg = TrainConfig.from_dict(fields)

    def on_epoch(r: dict) -> None:
        typer.echo(f"epoch {r['epoch']:>3}/{cfg.epochs}  loss {r['train_loss']:.4f}  "
                   f"train_cos {r['train_cosine']:.4f}  "
                   f"val_cos {r['val_cosine']:.4f}  {r['seconds']:.1f}s", err=True)

    typer.echo(f"model folder: {out}", err=True)
    summary = train_on_table(data, cfg, out, callback=on_epoch, resume=resume)
    typer.echo(json.dumps(summary, indent=2, default=str))
    typer.echo(f"model folder: {out}  (next: lvm registry register {out}, or lvm serve --model {out})", err=True)


@app.command()
def evaluate(
    model: Path = typer.Option(..., help="A trained model folder (or a registry version folder)."),
    data: Path = typer.Option(..., help=_TABLE + " The model's own (scored on --part) or any other of the same "
                                             "encoder (scored whole, out of distribution)."),
    part: Literal["test", "val", "train"] = typer.Option("test", help="Which part of the model's split."),
    train_data: Optional[Path] = typer.Option(None, help="The model's training table, for the baselines, when "
                                                         "--data is another table and the recorded path moved."),
    as_json: bool = typer.Option(False, "--json", help="Print every number (forward suite included) as JSON "
                                                       "instead of the tables."),
    json_out: Optional[Path] = typer.Option(None, "--json-out", help="Also write them to this JSON file."),
):
    """The model against every baseline (fitted on its training split) with the forward-prediction suite."""
    from lvm.evaluation.compare import evaluate_model, markdown_table
    from lvm.util.atomic import write_json

    res = evaluate_model(model, data, part, train_data)
    if json_out:
        write_json(json_out, res)
    if as_json:
        typer.echo(json.dumps(res, default=str))
        return
    typer.echo(markdown_table(res))
    where = "every article (out of distribution)" if res["out_of_distribution"] else f"{res['part']} windows"
    typer.echo(f"\n{res['n']} windows, {where}; beats every baseline: {res['beats_all_baselines']}; "
               f"same data as training: {res['same_data']}, same split: {res['same_split']}")


# ---------------------------------------------------------------------------------------------------- registry

registry_app = typer.Typer(help="The model registry: versions and the production/candidate aliases.",
                           no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(registry_app, name="registry")
_ROOT = typer.Option(None, "--root", help="Registry folder (default: data/registry).")


def _registry(root):
    from lvm.store.registry import Registry
    from lvm.util.paths import registry_dir

    return Registry(root or registry_dir())


_JSON = typer.Option(False, "--json", help="Print JSON (machine-readable) instead of text.")


@registry_app.command("ls")
def registry_ls(root: Optional[Path] = _ROOT, as_json: bool = _JSON):
    """Every version with its architecture, held-out cosine, aliases and creation time."""
    rows = _registry(root).list()
    if as_json:
        typer.echo(json.dumps(rows, default=str))
        return
    if not rows:
        typer.echo("(empty registry)")
    for r in rows:
        cos = (r.get("metrics") or {}).get("cosine")
        typer.echo(f"v{r['version']:<4} {r.get('arch', '?'):<12} cosine {cos if cos is None else f'{cos:.4f}'}  "
                   f"{','.join(r.get('aliases', [])) or '-':<22} {r.get('created_at', '')}")


@registry_app.command("show")
def registry_show(ref: str = typer.Argument("production", help="Version (v3 or 3) or alias."),
                  root: Optional[Path] = _ROOT, as_json: bool = _JSON):
    """One version: architecture, scores, aliases, then its lineage (where it came from) in short."""
    info = _registry(root).show(ref)
    if as_json:
        typer.echo(json.dumps(info, default=str))
        return
    cos = (info.get("metrics") or {}).get("cosine")
    typer.echo(f"v{info['version']}  {info.get('arch')}  D={info.get('dim')}  context={info.get('context')}  "
               f"held-out cosine {cos if cos is None else f'{cos:.4f}'}  aliases: "
               f"{', '.join(info.get('aliases') or []) or '-'}  created {info.get('created_at')}")
    typer.echo(f"encoder {info.get('encoder')}; data {info.get('data_hash')}; files in {info.get('path', '')}")
    lineage = info.get("lineage") or {}
    typer.echo(f"\nlineage of v{info['version']}:" + ("" if lineage else " (none recorded)"))
    for key, value in lineage.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        typer.echo(f"  {key}: {text if len(text) <= 200 else text[:197] + '...'}")


@registry_app.command("register")
def registry_register(model_dir: Path = typer.Argument(..., help="A trained model folder (from `lvm train`)."),
                      alias: Optional[str] = typer.Option(None, help="Point this alias at it, e.g. production "
                                                                     "(a running server follows production)."),
                      root: Optional[Path] = _ROOT):
    """Register a trained model folder as a new version, with its evaluation, lineage and forward gates."""
    from lvm.decision import forward_gates
    from lvm.store.by_hand import register_model_folder

    v = register_model_folder(_registry(root), model_dir, alias, gates=forward_gates)
    typer.echo(f"registered {model_dir} as v{v}" + (f"; {alias} -> v{v}" if alias else ""))


@registry_app.command("promote")
def registry_promote(ref: str = typer.Argument(..., help="Version to promote."),
                     alias: str = typer.Option("production", help="Alias to move."), root: Optional[Path] = _ROOT):
    """Point an alias at a version (atomic; a running server follows `production`)."""
    v = _registry(root).promote(ref, alias)
    typer.echo(f"{alias} -> v{v}")


@registry_app.command("rollback")
def registry_rollback(alias: str = typer.Option("production", help="Alias to move back."),
                      root: Optional[Path] = _ROOT):
    """Move an alias back to the version it pointed to before the last promotion."""
    v = _registry(root).rollback(alias)
    typer.echo(f"{alias} -> v{v}")


# ---------------------------------------------------------------------------------------------------- serving

app.command()(serve)


# ---------------------------------------------------------------------------------------------------- diagnosis

@app.command()
def diagnose(run_dir: Path = typer.Argument(..., help="A training run folder (data/runs/<name>) or a model folder "
                                                      "(from lvm train)."),
             out: Optional[Path] = typer.Option(None, help="Where to write the report (default RUN_DIR/report).")):
    """Diagnose a finished training run or model: memorisation, collapse, copying, baselines; report with plots."""
    from lvm.diagnosis.evidence import diagnose as run
    from lvm.diagnosis.render import to_markdown, write_report
    from lvm.store.runs import run_of_model
    from lvm.util.paths import check_output, runs_dir

    if out is not None:
        check_output(out, [run_dir], folder=True)
    if not (run_dir / "run.json").is_file() and (run_dir / "config.json").is_file():  # a model folder
        run_dir = run_of_model(run_dir, runs_dir() / f"diagnose-{run_dir.name}")
        typer.echo(f"a run folder for this model: {run_dir}", err=True)
    d = run(run_dir)
    write_report(d, out)
    typer.echo(to_markdown(d, images="none"))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
