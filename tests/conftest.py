"""Shared fixtures. Real text comes from ../shared/corpus (beside the repository); tests fail, not skip, without it."""

import contextlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _restore_torch_globals():
    """Process-wide torch settings that the server's start-up sets on purpose (oneDNN on/off, intra-op threads) are
    put back after every test: a later training test in the same process must run the kernels it would alone (the
    resume test compares a child process's epochs with this process's bit for bit)."""
    import torch

    mkldnn, threads = torch.backends.mkldnn.enabled, torch.get_num_threads()
    yield
    torch.backends.mkldnn.enabled = mkldnn
    torch.set_num_threads(threads)


def sigkill_when(proc, checkpoint_json: Path, ready, timeout: float = 120) -> None:
    """SIGKILL the training child `proc` as soon as `ready(checkpoint.json's content)` holds; fail the test if the
    child dies first or nothing is ready in time. The child is reaped either way."""
    import json
    import signal
    import time

    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            if checkpoint_json.is_file() and ready(json.loads(checkpoint_json.read_text())):
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        else:
            pytest.fail("the child wrote no such checkpoint in time")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    assert CORPUS.is_dir(), f"the shared corpus is expected at {CORPUS} (see shared/corpus/README.md)"
    return CORPUS


#: tiny values for the build options the architectures have (lvm.models.option_defaults): a test that runs every
#: registered architecture takes its sizes from here, so a new architecture is tested without a hand-kept list
SHRINK = {"hidden": 32, "layers": 2, "heads": 4, "ffn": 64, "headdim": 16, "d_state": 8}


def tiny_options(arch: str, **over) -> dict:
    """Small build options for `arch`: SHRINK's values, then `over`'s, for the options it has."""
    from lvm.models import MODELS

    return {k: v for k, v in {**SHRINK, **over}.items() if k in MODELS[arch].defaults}


def make_table(n_articles=6, length=12, dim=16, seed=0):
    """A small valid sentence table with smooth within-article drift (so the next vector is predictable)."""
    from lvm.data.table import SentenceTable

    rng = np.random.default_rng(seed)
    rows, vecs = [], []
    for a in range(n_articles):
        v = rng.normal(size=dim)
        for p in range(length):
            v = 0.9 * v + 0.3 * rng.normal(size=dim)
            rows.append((f"art{a:02d}", p, f"sentence {p} of article {a}"))
            vecs.append(v / np.linalg.norm(v))
    return SentenceTable.from_sentences(rows, np.array(vecs, dtype=np.float32), {"encoder": "synthetic"})


@pytest.fixture(scope="module")
def train_windows(tmp_path_factory):
    """A learnable synthetic table (30 articles x 20 sentences, D=16) on disk: (path, table, train and val windows
    of context 5 on the default article split)."""
    from lvm.data.dataset import read_table, split_articles, write_table
    from lvm.data.table import window_targets

    path = tmp_path_factory.mktemp("train_data") / "table.parquet"
    write_table(make_table(n_articles=30, length=20, dim=16, seed=1), path)
    table = read_table(path)
    split = split_articles(table, (0.8, 0.1, 0.1), 0, method="permutation")  # exact shares: a fixed table
    tr, va = (window_targets(table.article_id, table.position, 5, split.part(p)) for p in ("train", "val"))
    return path, table, tr, va


@pytest.fixture
def small_table():
    return make_table()


def quadratic_table(n_articles, length=25, dim=16, seed=0, noise=0.3):
    """Learnable but not linear: next = W(D v*v - 1)/sqrt(D) + W v/2 + noise, normalised. A small network learns it;
    the four baselines (all linear or constant) cannot."""
    from lvm.data.table import SentenceTable

    rng = np.random.default_rng(seed)
    W = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
    rows, vecs = [], []
    for a in range(n_articles):
        v = rng.normal(size=dim)
        v /= np.linalg.norm(v)
        for p in range(length):
            rows.append((f"art{a:03d}", p, ""))
            vecs.append(v)
            v = W @ (dim * v * v - 1) / np.sqrt(dim) + 0.5 * (W @ v) + noise * rng.normal(size=dim) / np.sqrt(dim)
            v /= np.linalg.norm(v)
    return SentenceTable.from_sentences(rows, np.array(vecs, np.float32), {"encoder": "synthetic-quadratic"})


@contextlib.contextmanager
def prefect_harness(data_dir: Path):
    """One Prefect test server (for a test module), with LVM_DATA_DIR at `data_dir`. The whole environment is
    restored afterwards: the runners export PREFECT_API_URL and the Dask nanny OMP_NUM_THREADS & co., which must not
    leak into other modules."""
    from prefect.testing.utilities import prefect_test_harness

    saved = dict(os.environ)
    os.environ["LVM_DATA_DIR"] = str(data_dir)
    try:
        with prefect_test_harness(server_startup_timeout=120):
            yield data_dir
    finally:
        os.environ.clear()
        os.environ.update(saved)


def copy_sotu12(corpus_dir: Path, dest: Path) -> Path:
    """The first twelve State of the Union speeches of the shared corpus, in a folder of their own."""
    dest.mkdir()
    for f in sorted((corpus_dir / "sotu").glob("*.txt"))[:12]:
        shutil.copy(f, dest)
    return dest
