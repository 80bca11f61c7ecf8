"""The `lvm` command line: every command calls the same library functions the Prefect tasks call."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Latent vector models: build datasets, train, evaluate, register and serve.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


def _user_errors():
    from lvm.corpus import CorpusError
    from lvm.schema import DataValidationError

    return (CorpusError, DataValidationError, FileNotFoundError, ValueError)


# ---------------------------------------------------------------------------------------------------- data

@app.command("build-dataset")
def build_dataset_cmd(
    corpus: str = typer.Option("builtin", help="A text file, a folder of .txt files, WikiText raw, JSONL, or 'builtin'."),
    format: str = typer.Option("auto", "--format", help="auto|text|wikitext|jsonl|builtin"),
    encoder: Optional[str] = typer.Option(None, help="sentence-transformers name or path; default: bundled all-MiniLM-L6-v2."),
    out: Path = typer.Option(Path("data/dataset.parquet"), help="Where to write the sentence table (Parquet)."),
    cache_dir: Path = typer.Option(Path("data/cache/embeddings"), help="Per-document embedding cache."),
    no_cache: bool = typer.Option(False, help="Embed everything again, ignoring the cache."),
):
    """Read a corpus, split it into sentences, embed them and write a validated sentence table."""
    from lvm.build import build_dataset

    try:
        summary = build_dataset(corpus, out, fmt=format, encoder=encoder, cache_dir=None if no_cache else cache_dir,
                                log=lambda m: typer.echo(m, err=True))
    except _user_errors() as exc:
        _fail(exc)
    typer.echo(json.dumps(summary, indent=2))


@app.command()
def inspect(
    file: Path = typer.Argument(..., help="A sentence table (Parquet)."),
    context: int = typer.Option(5, help="Context length used to count windows."),
    seed: int = typer.Option(0, help="Split seed."),
    fractions: str = typer.Option("0.8,0.1,0.1", help="train,val,test fractions of articles."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
):
    """Articles, sentences, D, norm stats, mean-vector norm, duplicates and windows per split."""
    from lvm.dataset import read_table, split_articles, table_stats

    try:
        table = read_table(file)
        split = split_articles(table, tuple(float(x) for x in fractions.split(",")), seed)
    except _user_errors() as exc:
        _fail(exc)
    stats = table_stats(table, context, split)
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    typer.echo(f"{file}")
    for key in ("articles", "sentences", "dim", "norm_min", "norm_mean", "norm_max", "mean_vector_norm",
                "duplicate_rows", "duplicate_rate", "windows"):
        val = stats[key]
        typer.echo(f"  {key:<18} {val:.4f}" if isinstance(val, float) else f"  {key:<18} {val}")
    for part in ("train", "val", "test"):
        typer.echo(f"  {part:<18} {stats['articles_per_split'][part]} articles, {stats['windows_per_split'][part]} windows")
    if stats["meta"]:
        typer.echo(f"  meta               {json.dumps(stats['meta'])}")


@app.command("import-npz")
def import_npz_cmd(
    npz: Path = typer.Argument(..., help="Seed-format .npz (context_sequences, target_vectors[, target_texts])."),
    out: Path = typer.Option(..., help="Sentence table to write (Parquet)."),
):
    """Turn the original project's window file into a sentence table (stride-1 streams rebuilt)."""
    from lvm.dataset import write_table
    from lvm.seed_npz import import_npz

    try:
        table = import_npz(npz)
        write_table(table, out)
    except _user_errors() as exc:
        _fail(exc)
    typer.echo(json.dumps({"path": str(out), **table.meta}, indent=2))


@app.command("export-npz")
def export_npz_cmd(
    file: Path = typer.Argument(..., help="A sentence table (Parquet)."),
    out: Path = typer.Option(..., help=".npz to write."),
    context: int = typer.Option(5, help="Context length of the windows."),
):
    """Write every in-article window of a sentence table in the original project's .npz format."""
    from lvm.dataset import read_table
    from lvm.seed_npz import export_npz

    try:
        export_npz(read_table(file), out, context)
    except _user_errors() as exc:
        _fail(exc)
    typer.echo(str(out))


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
