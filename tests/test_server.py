"""lvm.server.app: every endpoint and every 4xx case (TestClient), hot reload, and a real uvicorn process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from lvm.models import build_model
from lvm.models.io import load_model, save_model
from lvm.server.app import create_app
from lvm.store.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
DIM, CONTEXT = 16, 5


def make_model_dir(folder: Path, *, seed: int, dim: int = DIM, arch: str = "lstm") -> Path:
    torch.manual_seed(seed)
    hp = {"hidden": 32, "layers": 1}
    model = build_model(arch, dim, context=CONTEXT, **hp)
    config = {"arch": arch, "dim": dim, "context": CONTEXT, "residual": False, "model": hp,
              "data_hash": "h", "encoder": f"hash:{dim}", "seed": seed}
    save_model(folder, model, config)
    (folder / "metrics.json").write_text(json.dumps({"cosine": 0.5 + seed / 100}))
    (folder / "history.json").write_text("[]")
    return folder


def register(reg: Registry, folder: Path, **kw) -> int:
    return reg.register(folder, data_hash="h", encoder=f"hash:{DIM}", encoder_dim=DIM, **kw)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    return [make_model_dir(base / f"m{i}", seed=i) for i in range(2)]


@pytest.fixture
def registry(tmp_path, model_dirs):
    reg = Registry(tmp_path / "registry")
    register(reg, model_dirs[0], alias="production")
    register(reg, model_dirs[1], alias="candidate")
    return reg


@pytest.fixture
def bank_path(tmp_path):
    from conftest import make_table

    from lvm.data.dataset import write_table

    path = tmp_path / "bank.parquet"
    write_table(make_table(n_articles=4, length=10, dim=DIM), path)
    return path


@pytest.fixture
def encoder():
    from lvm.ingest.encoders import HashEncoder

    return HashEncoder(DIM)


def contexts(batch=1, context=CONTEXT, dim=DIM, seed=0):
    rng = np.random.default_rng(seed)
    ctx = rng.normal(size=(batch, context, dim)).astype(np.float32)
    return ctx / np.linalg.norm(ctx, axis=-1, keepdims=True)


def expected(model_dir: Path, ctx: np.ndarray) -> np.ndarray:
    model, _ = load_model(model_dir)
    model.eval()
    with torch.inference_mode():
        out = model(torch.from_numpy(ctx))
    return torch.nn.functional.normalize(out, dim=-1).numpy()


def ok_predict(client, headers=None, version=None):
    r = client.post("/predict", json={"contexts": contexts().tolist()}, headers=headers or {})
    assert r.status_code == 200, r.text
    if version is not None:
        assert r.json()["version"] == version
    return r.json()


# ------------------------------------------------------------------------------------------------ endpoints
def test_health_model_predict(registry, model_dirs):
    with TestClient(create_app(registry.root)) as client:
        r = client.get("/health")
        assert r.status_code == 200 and r.json() == {"status": "ok", "alias": "production", "version": 1,
                                                     "alias_version": 1, "last_reload_error": None}
        info = client.get("/model").json()
        assert info["version"] == 1 and info["arch"] == "lstm" and info["dim"] == DIM
        assert info["context"] == CONTEXT and info["metrics"] == {"cosine": 0.5}
        assert info["encoder"] == f"hash:{DIM}" and info["next_available"] is False

        ctx = contexts(batch=3)
        r = client.post("/predict", json={"contexts": ctx.tolist()})
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        body = r.json()
        vectors = np.asarray(body["vectors"], dtype=np.float32)
        assert body["version"] == 1 and vectors.shape == (3, DIM)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(vectors, expected(model_dirs[0], ctx), atol=1e-5)
        # integers are numbers too
        assert client.post("/predict", json={"contexts": [[[1] + [0] * (DIM - 1)] * CONTEXT]}).status_code == 200
        # a full batch (1.6 MB body: parsed off the event loop) works, one more is refused
        big = contexts(batch=1024, seed=1)
        r = client.post("/predict", json={"contexts": big.tolist()})
        assert r.status_code == 200 and len(r.json()["vectors"]) == 1024
        np.testing.assert_allclose(r.json()["vectors"][-1], expected(model_dirs[0], big[-1:])[0], atol=1e-5)
        big[-1, -1, -1] = np.nan
        r = client.post("/predict", content=json.dumps({"contexts": big.tolist()}),
                        headers={"content-type": "application/json"})
        assert r.status_code == 422 and "first at contexts[1023][4][15]" in r.json()["detail"]
        r = client.post("/predict", json={"contexts": contexts(batch=1025).tolist()})
        assert r.status_code == 413 and "max_batch=1024" in r.json()["detail"]
        # another alias can be served
    with TestClient(create_app(registry.root, alias="candidate")) as client:
        ok_predict(client, version=2)


GOOD = contexts().tolist()
BAD_REQUESTS = [
    # (name, raw body, status, part of the message)
    ("malformed", b'{"contexts": [[[0.1, 0.2', 400, "malformed JSON"),
    ("empty body", b"", 400, "empty request body"),
    ("not an object", b"[1, 2, 3]", 422, "must be a JSON object"),
    ("missing field", b'{"context": []}', 422, "missing field 'contexts'"),
    ("contexts not a list", b'{"contexts": 3}', 422, "must be a [batch][5][16] array"),
    ("empty batch", b'{"contexts": []}', 422, "is empty"),
    ("wrong dim", json.dumps({"contexts": contexts(dim=DIM - 1).tolist()}).encode(), 422,
     f"expected vectors of dimension {DIM}"),
    ("short context", json.dumps({"contexts": contexts(context=3).tolist()}).encode(), 422,
     "exactly 5 vectors"),
    ("long context", json.dumps({"contexts": contexts(context=6).tolist()}).encode(), 422, "got 6"),
    ("two levels", json.dumps({"contexts": GOOD[0][:3]}).encode(), 422, "levels of nesting"),
    ("ragged", json.dumps({"contexts": [GOOD[0][:4] + [GOOD[0][4][:3]]]}).encode(), 422, "regular"),
    ("strings", json.dumps({"contexts": [[["a"] * DIM] * CONTEXT]}).encode(), 422, "only numbers"),
    ("nulls", json.dumps({"contexts": [[[None] * DIM] * CONTEXT]}).encode(), 422, "only numbers"),
    ("NaN", json.dumps({"contexts": [[[float("nan")] + [0.1] * (DIM - 1)] * CONTEXT]}).encode(), 422,
     "non-finite values"),
    ("Infinity", json.dumps({"contexts": [[[0.1] * (DIM - 1) + [float("-inf")]] * CONTEXT]}).encode(), 422,
     "first at contexts[0][0][15]"),
    ("float32 overflow", json.dumps({"contexts": [[[1e39] * DIM] * CONTEXT]}).encode(), 422, "non-finite"),
    ("batch too large", json.dumps({"contexts": contexts(batch=5).tolist()}).encode(), 413, "max_batch=4"),
    ("body too large", b'{"contexts": [' + b" " * 40_000 + b"]}", 413, "exceeds the limit of 30000 bytes"),
]


def test_bad_requests_get_clear_4xx_and_server_keeps_serving(registry):
    app = create_app(registry.root, max_batch=4, max_body_bytes=30_000)
    with TestClient(app) as client:
        for name, raw, status, message in BAD_REQUESTS:
            r = client.post("/predict", content=raw, headers={"content-type": "application/json"})
            assert r.status_code == status, (name, r.status_code, r.text)
            assert message in r.json()["detail"], (name, r.json())
            ok_predict(client, version=1)
        # wrong method / unknown path are 4xx JSON too
        assert client.get("/predict").status_code == 405
        assert client.get("/nope").status_code == 404
        ok_predict(client, version=1)


def test_bearer_token(registry):
    with TestClient(create_app(registry.root, token="s3cret")) as client:
        assert client.get("/health").status_code == 200  # open for supervisors
        for headers, message in [({}, "missing bearer token"), ({"Authorization": "Bearer nope"}, "wrong"),
                                 ({"Authorization": "Basic s3cret"}, "missing bearer token"),
                                 ({"Authorization": "Bearer "}, "missing bearer token")]:
            for method, path in [("get", "/model"), ("post", "/predict"), ("post", "/next")]:
                r = getattr(client, method)(path, headers=headers)
                assert r.status_code == 401, (headers, path, r.text)
                assert message in r.json()["detail"] and r.headers["www-authenticate"] == "Bearer"
        # the token is checked before the body is read: a huge unauthenticated body is still a 401
        r = client.post("/predict", content=b"x" * 10, headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        assert client.get("/model", headers=auth).status_code == 200
        ok_predict(client, headers=auth, version=1)


def test_next_nearest_neighbours(registry, bank_path, encoder, model_dirs):
    from lvm.server.bank import load_bank

    bank = load_bank(bank_path)
    with TestClient(create_app(registry.root, encoder=encoder, bank_path=bank_path)) as client:
        assert client.get("/model").json()["next_available"] is True
        sentences = [str(t) for t in bank.text[:7]]
        r = client.post("/next", json={"sentences": sentences, "k": 4})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["version"] == 1 and body["method"] == "nearest-neighbour" and body["encoder"] == f"hash:{DIM}"
        results = body["results"]
        assert len(results) == 4
        scores = [x["score"] for x in results]
        assert scores == sorted(scores, reverse=True)
        assert not {x["text"] for x in results} & set(sentences[-CONTEXT:])  # context excluded
        # the same thing by hand
        pred = expected(model_dirs[0], encoder.encode(sentences[-CONTEXT:])[None])[0]
        all_scores = bank.vectors @ pred
        all_scores[np.isin(bank.text, sentences[-CONTEXT:])] = -np.inf
        top = np.argsort(-all_scores)[:4]
        assert [x["text"] for x in results] == [bank.text[i] for i in top]
        np.testing.assert_allclose(scores, all_scores[top], atol=1e-5)
        assert {"article_id", "position"} <= set(results[0])

        r = client.post("/next", json={"sentences": sentences, "k": 200 // 2, "exclude_context": False})
        assert r.status_code == 200 and len(r.json()["results"]) == 40  # k is capped by the bank size

        for payload, status, message in [
            ({"sentences": sentences[:4]}, 422, "at least 5 sentences"),
            ({"sentences": sentences, "k": 0}, 422, "'k' must be an integer"),
            ({"sentences": sentences, "k": "3"}, 422, "'k' must be an integer"),
            ({"sentences": sentences, "k": 101}, 422, "from 1 to 100"),
            ({"sentences": [1, 2, 3, 4, 5]}, 422, "list of strings"),
            ({"sentences": sentences, "exclude_context": "yes"}, 422, "true or false"),
            ({}, 422, "list of strings"),
        ]:
            r = client.post("/next", json=payload)
            assert r.status_code == status and message in r.json()["detail"], (payload, r.text)
        r = client.post("/next", content=b"{oops", headers={"content-type": "application/json"})
        assert r.status_code == 400
        assert client.post("/next", json={"sentences": sentences}).status_code == 200


def test_next_unavailable(registry, tmp_path, encoder):
    with TestClient(create_app(registry.root)) as client:
        r = client.post("/next", json={"sentences": ["a"] * 5})
        assert r.status_code == 503 and "without a sentence bank and encoder" in r.json()["detail"]
    from conftest import make_table

    from lvm.data.dataset import write_table

    wide = tmp_path / "wide.parquet"
    write_table(make_table(n_articles=2, length=8, dim=DIM * 2), wide)
    with TestClient(create_app(registry.root, encoder=encoder, bank_path=wide)) as client:
        r = client.post("/next", json={"sentences": ["a"] * 5})
        assert r.status_code == 503 and "32-D vectors" in r.json()["detail"]
        ok_predict(client, version=1)


# ------------------------------------------------------------------------------------------------ hot reload
def wait_for_version(client, version, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/model").json()["version"] == version:
            return
        time.sleep(0.02)
    raise AssertionError(f"server did not switch to v{version}: {client.get('/health').json()}")


def test_hot_reload_follows_promote_and_rollback(registry, model_dirs):
    ctx = contexts()
    with TestClient(create_app(registry.root, poll_interval=0.05)) as client:
        v1_out = np.asarray(ok_predict(client, version=1)["vectors"])
        registry.promote(2)
        wait_for_version(client, 2)
        body = client.post("/predict", json={"contexts": ctx.tolist()}).json()
        assert body["version"] == 2
        np.testing.assert_allclose(body["vectors"], expected(model_dirs[1], ctx), atol=1e-5)
        assert not np.allclose(body["vectors"], v1_out)
        assert client.get("/model").json()["metrics"] == {"cosine": 0.51}
        registry.rollback()
        wait_for_version(client, 1)
        ok_predict(client, version=1)


def test_broken_version_keeps_current_model(registry, tmp_path):
    broken = make_model_dir(tmp_path / "broken", seed=5)
    v = register(registry, broken)
    weights = registry.get(v) / "model.safetensors"  # damaged after registration (register refuses it)
    os.chmod(weights, 0o644)
    weights.write_bytes(b"not a safetensors file")
    with TestClient(create_app(registry.root, poll_interval=0.05)) as client:
        registry.promote(v)
        deadline = time.monotonic() + 10
        while (health := client.get("/health").json())["last_reload_error"] is None:
            assert health["status"] == "loading" and health["alias_version"] == v, health  # never "ok"
            assert time.monotonic() < deadline, "reload error never reported"
            time.sleep(0.02)
        health = client.get("/health").json()
        assert health["status"] == "degraded" and health["version"] == 1 and health["alias_version"] == v
        assert "not a safetensors file" in health["last_reload_error"]
        ok_predict(client, version=1)
        registry.rollback()
        registry.promote(2)
        wait_for_version(client, 2)
        assert client.get("/health").json()["last_reload_error"] is None


def test_starts_without_model_and_picks_it_up(tmp_path, model_dirs):
    reg = Registry(tmp_path / "empty")
    with TestClient(create_app(reg.root, poll_interval=0.05)) as client:
        r = client.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "no_model"
        r = client.post("/predict", json={"contexts": GOOD})
        assert r.status_code == 503 and "no model loaded for alias 'production'" in r.json()["detail"]
        register(reg, model_dirs[0], alias="production")
        deadline = time.monotonic() + 10
        while client.get("/health").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        ok_predict(client, version=1)


# ------------------------------------------------------------------------------------------------ real server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_real_uvicorn_process(registry, tmp_path, bank_path):
    port = free_port()
    env = {**os.environ, "LVM_SERVER_TOKEN": "tok", "PYTHONPATH": os.pathsep.join(
        p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p)}
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lvm.server", "--registry", str(registry.root), "--port", str(port),
             "--log-level", "warning", "--torch-threads", "1", "--bank", str(bank_path)],
            stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        auth = {"Authorization": "Bearer tok"}
        with httpx.Client(base_url=base, headers=auth, timeout=10) as client:
            assert client.get("/model").json()["version"] == 1
            assert httpx.get(f"{base}/model").status_code == 401
            body = client.post("/predict", json={"contexts": contexts(batch=2).tolist()}).json()
            assert body["version"] == 1 and np.asarray(body["vectors"]).shape == (2, DIM)
            r = client.post("/predict", content=b'{"contexts": [[[NaN]]]}',
                            headers={"content-type": "application/json"})
            assert r.status_code == 422
            # default body limit is sized from the model: 32 B x max_batch x C x D + 64 KiB
            r = client.post("/predict", content=b"[" + b" " * 3_000_000 + b"]",
                            headers={"content-type": "application/json"})
            assert r.status_code == 413 and "exceeds the limit" in r.json()["detail"]
            # /next with the encoder the model was registered with (hash:16)
            r = client.post("/next", json={"sentences": [f"sentence {i} of article 1" for i in range(5)], "k": 3})
            assert r.status_code == 200 and len(r.json()["results"]) == 3, r.text
            assert r.json()["encoder"] == f"hash:{DIM}"

            # requests keep flowing while the alias moves: none fails, and the new version shows up
            statuses, versions, stop = [], set(), threading.Event()

            def hammer():
                with httpx.Client(base_url=base, headers=auth, timeout=10) as c:
                    while not stop.is_set():
                        r = c.post("/predict", json={"contexts": GOOD})
                        statuses.append(r.status_code)
                        if r.status_code == 200:
                            versions.add(r.json()["version"])

            threads = [threading.Thread(target=hammer) for _ in range(2)]
            for t in threads:
                t.start()
            time.sleep(0.3)
            registry.promote(2)
            deadline = time.monotonic() + 15
            while 2 not in versions and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.2)
            stop.set()
            for t in threads:
                t.join()
            assert statuses and set(statuses) == {200}
            assert versions == {1, 2}
            assert client.get("/model").json()["version"] == 2
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.filterwarnings("ignore:Mismatch dtype between input and weight")
def test_bfloat16_serving_every_arch(tmp_path):
    """dtype="bfloat16" works for every architecture (mamba2 mixes dtypes: served under autocast)."""
    reg = Registry(tmp_path / "registry")
    ctx = contexts(batch=2)
    for seed, arch in enumerate(["lstm", "gru", "mamba2", "transformer"]):
        folder = make_model_dir(tmp_path / arch, seed=seed, arch=arch)
        register(reg, folder, alias="production")
        with TestClient(create_app(reg.root, dtype="bfloat16")) as client:
            info = client.get("/model").json()
            assert info["arch"] == arch and info["dtype"] == "bfloat16"
            body = client.post("/predict", json={"contexts": ctx.tolist()}).json()
            got = np.asarray(body["vectors"])
            want = expected(folder, ctx)
            assert (np.sum(got * want, axis=1) > 0.99).all(), arch
            np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="dtype must be one of"):
        create_app(reg.root, dtype="float16")


# ------------------------------------------------------------------------------ the loop by hand (#27 item 2)

def test_train_then_register_then_serve_a_folder_answers_predict(tmp_path, monkeypatch):
    """`lvm train` writes a new folder each run and says where; `lvm registry register DIR` makes it a version with
    its lineage; `lvm serve --model DIR` serves it without any registry; /predict answers with its prediction."""
    from conftest import make_table
    from typer.testing import CliRunner

    from lvm import cli
    from lvm.data.dataset import write_table
    from lvm.server import app as server_app

    runner = CliRunner()
    monkeypatch.setenv("LVM_DATA_DIR", str(tmp_path / "data"))
    table = write_table(make_table(n_articles=8, length=14, dim=16), tmp_path / "t.parquet")
    folders = []
    for _ in range(2):
        res = runner.invoke(cli.app, ["train", "--data", str(table), "--epochs", "1"])
        assert res.exit_code == 0, res.output
        folders.append(Path(json.loads(res.stdout[res.stdout.index("{"):])["model_dir"]))
    assert folders[0] != folders[1] and all((f / "model.safetensors").is_file() for f in folders)  # never overwritten
    assert f"model folder: {folders[1]}" in res.stderr

    res = runner.invoke(cli.app, ["registry", "register", str(folders[1]), "--alias", "production",
                                  "--root", str(tmp_path / "reg")])
    assert res.exit_code == 0 and "as v1; production -> v1" in res.output, res.output
    info = Registry(tmp_path / "reg").show("production")
    assert info["lineage"]["registered_from"] == str(folders[1].resolve()) and info["metrics"]["cosine"] > 0
    assert info["lineage"]["data_hash"] and "forward_margin" in info["lineage"]["gates"]

    served = []
    monkeypatch.setattr(server_app, "run_server", lambda app, host, port, **kw: served.append(app) or
                        _predict_once(app, folders[0], served))
    res = runner.invoke(cli.app, ["serve", "--model", str(folders[0])])
    assert res.exit_code == 0, res.output
    body, expected = served[1]
    assert body["version"] == 1 and np.allclose(body["vectors"], expected, atol=1e-6)


def _predict_once(app, folder, out):
    from lvm.evaluation.predictors import default_article, predict
    from lvm.models.io import load_model

    ctx = np.random.default_rng(0).normal(size=(2, 5, 16)).astype(np.float32)
    with TestClient(app) as client:
        body = client.post("/predict", json={"contexts": ctx.tolist()}).json()
    model, _ = load_model(folder)  # the default lstm reads the article; the server's stand-in is the context mean
    out.append((body, predict(model, ctx, article=default_article(ctx))))


def test_serve_model_refuses_a_folder_that_is_not_a_model_and_a_registry_beside_it(tmp_path):
    from typer.testing import CliRunner

    from lvm import cli

    res = CliRunner().invoke(cli.app, ["serve", "--model", str(tmp_path)])
    assert res.exit_code == 2 and "not a model folder" in res.output
    res = CliRunner().invoke(cli.app, ["serve", "--model", str(tmp_path), "--root", str(tmp_path)])
    assert res.exit_code == 2 and "give one of them" in res.output


def test_lvm_load_predicts_what_the_server_serves_and_decodes_to_sentences(tmp_path, monkeypatch):
    """#27 item 8: lvm.load(MODEL_DIR) and lvm.load("production") give a predictor whose .predict equals the
    served /predict bit for bit (the same function), and whose .next returns bank sentences, never its input."""
    from conftest import make_table

    import lvm
    from lvm.data.dataset import write_table
    from lvm.store.by_hand import register_model_folder
    from lvm.train.config import TrainConfig
    from lvm.train.on_table import train_on_table

    table = make_table(n_articles=8, length=14, dim=16)
    path = write_table(table, tmp_path / "t.parquet")
    folder = tmp_path / "m"
    train_on_table(path, TrainConfig(arch="lstm", epochs=1, model={"hidden": 16, "layers": 1}, threads=1), folder)
    reg = Registry(tmp_path / "reg")
    register_model_folder(reg, folder, alias="production")
    by_folder, by_alias = lvm.load(folder), lvm.load("production", registry=reg.root)
    ctx = np.random.default_rng(1).normal(size=(3, 5, 16)).astype(np.float32)
    with TestClient(create_app(reg.root)) as client:
        served = np.asarray(client.post("/predict", json={"contexts": ctx.tolist()}).json()["vectors"], np.float32)
    assert np.array_equal(by_folder.predict(ctx), served) and np.array_equal(by_alias.predict(ctx), served)
    assert by_folder.predict(ctx[0]).shape == (16,)
    with pytest.raises(ValueError, match=r"\[B, 5, 16\]"):
        by_folder.predict(ctx[:, :3])

    class Hash16:  # the table's own "encoder": a sentence's row vector, looked up by its text
        name = "synthetic"

        def encode(self, sentences, **kw):
            rows = {t: i for i, t in enumerate(table.text)}
            return table.vectors[[rows[s] for s in sentences]]

    by_folder._encoder = Hash16()
    said = [str(t) for t in table.text[:6]]
    got = by_folder.next(said, k=3)
    assert len(got) == 3 and not {g["text"] for g in got} & set(said)
    assert [g["score"] for g in got] == sorted((g["score"] for g in got), reverse=True)
