"""`lvm`, the whole command line: the library's commands (lvm.cli) and `lvm run`, the train flow.

`lvm run` has every scalar flow parameter as a typed option whose help shows the default the flow declares, and
`--config FILE` (TOML or YAML: flow parameter names as keys) for the rest (loss, model_options, train_options) or
for keeping a run's settings in a file; an option given on the command line wins over the file. Prefect is
imported only when a run starts, so the other commands start as fast as before.
"""

from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path
from typing import Optional

import typer

import lvm.defaults as D  # plain values: `lvm --help` loads no torch
from lvm.cli import app
from lvm.util.user_errors import is_failure, user_errors


def _default(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def read_config(path: Path) -> dict:
    """Flow parameters from a TOML (.toml) or YAML (.yaml, .yml) file; the error names the file and the rule."""
    text = path.read_text()
    try:
        if path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10: YAML only
                raise ValueError(f"{path}: TOML needs Python >= 3.11 here; write the config as YAML") from None
            data = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise ValueError(f"{path}: a run config is a .toml or .yaml file (rule: the suffix says which)")
    except ValueError:
        raise
    except Exception as exc:  # tomllib.TOMLDecodeError is a ValueError; yaml's errors are not
        raise ValueError(f"{path}: not valid {path.suffix[1:].upper()} ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a run config is a table of flow parameters, got {type(data).__name__}")
    return data


@app.command("run")
def run(
    data: Optional[str] = typer.Option(None, help="A sentence table, a corpus (file or folder) or builtin.",
                                       show_default="builtin"),
    arch: Optional[str] = typer.Option(None, help="Architectures, comma-separated (lvm models lists them).",
                                       show_default=_default(D.ARCHITECTURES)),
    epochs: Optional[int] = typer.Option(None, show_default=str(D.EPOCHS)),
    context: Optional[int] = typer.Option(None, help="Sentences a model reads.", show_default=str(D.CONTEXT)),
    seed: Optional[int] = typer.Option(None, show_default=str(D.SEED)),
    fractions: Optional[str] = typer.Option(None, help="train,val,test shares of the articles.",
                                            show_default=_default(D.FRACTIONS)),
    split_method: Optional[str] = typer.Option(None, help="hash (a grown corpus keeps its test articles) or "
                                               "permutation.", show_default=D.SPLIT_METHOD),
    encoder: Optional[str] = typer.Option(None, help="For a corpus: the encoder that embeds it.",
                                          show_default="the bundled MiniLM"),
    baseline_threshold: Optional[float] = typer.Option(None, help="Investigate below this held-out cosine.",
                                                       show_default="the global-mean vector's cosine on the run's "
                                                                    "test articles"),
    deploy_threshold: Optional[float] = typer.Option(None, help="Deploy at or above it (and every other rule).",
                                                     show_default=f"baseline threshold + {D.SEED_DEPLOY_MARGIN:.4f}"),
    require_forward: Optional[bool] = typer.Option(None, "--require-forward/--no-require-forward",
                                                   help="Deploy only a model that passes the forward gates.",
                                                   show_default="on"),
    min_forward_margin: Optional[float] = typer.Option(None, show_default=str(D.MIN_FORWARD_MARGIN)),
    min_shuffle_drop: Optional[float] = typer.Option(None, show_default=str(D.MIN_SHUFFLE_DROP)),
    min_last_input_gain: Optional[float] = typer.Option(None, show_default=str(D.MIN_LAST_INPUT_GAIN)),
    max_paraphrase_ratio: Optional[float] = typer.Option(None, show_default=str(D.MAX_PARAPHRASE_RATIO)),
    challenge: Optional[bool] = typer.Option(None, "--challenge/--no-challenge",
                                             help="Score production on the same test windows; replace it only "
                                                  "when beaten.", show_default="on"),
    min_improvement: Optional[float] = typer.Option(None, help="Cosine a challenger must gain over production.",
                                                    show_default=str(D.MIN_IMPROVEMENT)),
    ensemble: Optional[bool] = typer.Option(None, "--ensemble/--no-ensemble",
                                            help="Their ensemble as one more candidate.", show_default="on"),
    init: Optional[str] = typer.Option(None, help="A trained model folder to fine-tune from (an ensemble: each "
                                                  "member's architecture).", show_default="from scratch"),
    runner: Optional[str] = typer.Option(None, help="threads, processes or dask.", show_default=D.RUNNER),
    workers: Optional[int] = typer.Option(None, show_default="min(architectures, cores)"),
    dask_address: Optional[str] = typer.Option(None, help="A Dask scheduler (implies --runner dask).",
                                               show_default="a temporary LocalCluster with --runner dask"),
    registry: Optional[str] = typer.Option(None, show_default="data/registry"),
    ood_data: Optional[str] = typer.Option(None, help="A second table scored whole (out of distribution).",
                                           show_default="none"),
    config: Optional[Path] = typer.Option(None, help="TOML or YAML of flow parameters (loss, model_options, "
                                                     "train_options, ...); options given here win."),
):
    """Run the train flow once (Prefect's temporary server, or the one PREFECT_API_URL names) and print the
    decision: train, evaluate against the baselines, deploy / hold / investigate."""
    given = {"data": data, "architectures": arch.split(",") if arch else None, "epochs": epochs,
             "context": context, "seed": seed, "split_method": split_method, "encoder": encoder,
             "baseline_threshold": baseline_threshold, "deploy_threshold": deploy_threshold,
             "require_forward": require_forward, "min_forward_margin": min_forward_margin,
             "min_shuffle_drop": min_shuffle_drop, "min_last_input_gain": min_last_input_gain,
             "max_paraphrase_ratio": max_paraphrase_ratio, "challenge_production": challenge,
             "min_improvement": min_improvement, "ensemble": ensemble, "init": init, "runner": runner,
             "workers": workers, "dask_address": dask_address, "registry": registry, "ood_data": ood_data,
             "fractions": tuple(float(x) for x in fractions.split(",")) if fractions else None}
    params = read_config(config) if config else {}
    params.update({k: v for k, v in given.items() if v is not None})
    if params.get("dask_address"):
        params["runner"] = "dask"
    run_flow(params, source=str(config) if config else "the command line")


def run_flow(params: dict, source: str = "the command line"):
    """Check `params` against the flow's signature and its rules before a server starts, run it, print the
    summary. A user's mistake exits 2 with one `error:` line; a run that failed (nothing trained) exits 1."""
    from flows import train_lvm as module

    known = inspect.signature(module.train_lvm.fn).parameters
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"{source}: unknown flow parameters {unknown} (rule: the names of `lvm run --help`'s "
                         f"options, with _ for -, or loss, model_options, train_options)")
    full = {k: params.get(k, p.default) for k, p in known.items()}
    module.check_parameters(full["data"], list(full["architectures"]), full["epochs"], full["context"],
                            full["fractions"], full["baseline_threshold"], full["deploy_threshold"], full["init"])
    if not os.environ.get("LVM_DEBUG"):
        for name in ("prefect.task_runs", "prefect.flow_runs"):
            logging.getLogger(name).addFilter(_no_traceback_for_mistakes)
    result = module.train_lvm(**params)  # a failed run (RuntimeError) exits 1 through lvm.util.user_errors
    typer.echo(f"\n{result.table}\n\n{result.champion_table}\n\nDECISION: {result.decision.upper()} — {result.reason}")
    if result.failed:
        typer.echo("failed: " + "; ".join(f"{a}: {m}" for a, m in result.failed.items()))
    typer.echo(f"run folder: {result.run_dir}")
    if result.registry:
        typer.echo(f"registry: v{result.registry['version']} ({result.registry.get('alias')}) in "
                   f"{result.registry['registry']}")
    if result.report:
        typer.echo(f"report: {result.report}")
    typer.echo(module.where_in_the_ui(result.flow_run_id))
    return result


def _no_traceback_for_mistakes(record: logging.LogRecord) -> bool:
    """A logging filter: Prefect logs a failed task or flow run with its traceback; for a user's mistake (bad data,
    a missing file) the message is the whole story, and the command ends with it as one `error:` line."""
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, user_errors()) and not is_failure(exc):
        record.exc_info, record.exc_text = None, None
    return True


def main() -> None:
    """The `lvm` program (pyproject's console script)."""
    app()


__all__ = ["app", "main", "read_config", "run", "run_flow"]


if __name__ == "__main__":  # python -m flows.cli run ...: the console script without an install
    main()
