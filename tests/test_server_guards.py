"""The server's guards: start-up refusals, non-finite models never swapped in, huge inputs, slow/odd bodies.

Every server here listens on 127.0.0.1 only; `run_server` is replaced where a test only checks start-up."""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import numpy as np
import pytest
import torch
from fastapi import HTTPException
from fastapi.testclient import TestClient
from safetensors.torch import load_file, save_file
from test_server import CONTEXT, DIM, contexts, expected, free_port, make_model_dir, ok_predict, register
from typer.testing import CliRunner

import lvm.server.app as server
from lvm.cli import app
from lvm.server.__main__ import main as server_main
from lvm.server.app import create_app
from lvm.server.holder import LoadedModel
from lvm.server.options import TOKEN_ENV
from lvm.server.requests import MAX_SENTENCE_CHARS
from lvm.store.registry import Registry

runner = CliRunner()


@pytest.fixture(scope="module")
def good_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("good") / "m", seed=0)


@pytest.fixture
def registry(tmp_path, good_dir):
    reg = Registry(tmp_path / "registry")
    register(reg, good_dir, alias="production")
    return reg


@pytest.fixture
def no_run(monkeypatch):
    """Record calls of run_server instead of binding a socket."""
    calls = []
    monkeypatch.setattr(server, "run_server", lambda app, host, port, **kw: calls.append((host, port)))
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    return calls


def serve_cli(*args):
    t = time.monotonic()
    res = runner.invoke(app, ["serve", *args])
    return res, time.monotonic() - t


# ------------------------------------------------------------------------------------------- 1: public bind
@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.7", "myhost.example"])
def test_public_bind_without_token_is_refused(registry, no_run, host):
    res, took = serve_cli("--root", str(registry.root), "--host", host)
    assert res.exit_code == 2 and "error:" in res.output and "Traceback" not in res.output, res.output
    assert "--token" in res.output and "--insecure-no-token" in res.output and host in res.output
    assert took < 1.0 and no_run == []
    with pytest.raises(SystemExit) as info:  # python -m lvm.server: the same rule
        server_main(["--registry", str(registry.root), "--host", host])
    assert info.value.code == 2 and no_run == []
    with pytest.raises(ValueError, match="--token"):
        server.serve(registry.root, host)


def test_public_bind_with_token_or_explicit_opt_out(registry, no_run, monkeypatch):
    for args in (["--token", "t"], ["--insecure-no-token"]):
        res, _ = serve_cli("--root", str(registry.root), "--host", "0.0.0.0", *args)
        assert res.exit_code == 0, res.output
    monkeypatch.setenv(TOKEN_ENV, "t")
    assert serve_cli("--root", str(registry.root), "--host", "0.0.0.0")[0].exit_code == 0
    monkeypatch.delenv(TOKEN_ENV)
    server_main(["--registry", str(registry.root), "--host", "0.0.0.0", "--insecure-no-token"])
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1"):  # loopback needs no token
        assert serve_cli("--root", str(registry.root), "--host", host)[0].exit_code == 0
    assert no_run == [("0.0.0.0", 8000)] * 4 + [(h, 8000) for h in ("127.0.0.1", "127.0.0.2", "localhost", "::1")]


# ------------------------------------------------------------------------------------------- 9: start-up errors
def test_startup_errors_are_one_clear_line(registry, tmp_path, no_run):
    garbage = tmp_path / "bank.parquet"
    garbage.write_bytes(b"PAR1 not really")
    missing = tmp_path / "nope.parquet"
    cases = [
        (["--bank", str(garbage), "--encoder", "hash:16"], str(garbage)),
        (["--bank", str(missing), "--encoder", "hash:16"], str(missing)),
        (["--port", "99999"], "--port"),
        (["--port", "-1"], "--port"),
        (["--bank", str(garbage), "--encoder", "hash:abc"], "cannot load encoder 'hash:abc'"),
        (["--bank", str(garbage), "--encoder", "no-such-org/no-such-encoder-xyz"],
         "cannot load encoder 'no-such-org/no-such-encoder-xyz'"),
    ]
    for args, message in cases:
        res, took = serve_cli("--root", str(registry.root), *args)
        assert res.exit_code == 2 and "error:" in res.output, (args, res.output)
        assert message in res.output and "Traceback" not in res.output, (args, res.output)
    res, took = serve_cli("--root", str(registry.root), "--dtype", "float16")  # a choice: the parser refuses it
    assert res.exit_code == 2 and "float16" in res.output and "not one of" in res.output and took < 1.0
    # options are checked before anything is loaded: a bad port fails fast even with a broken bank
    res, took = serve_cli("--root", str(registry.root), "--port", "99999", "--bank", str(garbage))
    assert res.exit_code == 2 and "--port" in res.output and took < 1.0
    assert no_run == []


def test_startup_with_tampered_registry_files(registry, no_run):
    aliases = registry.aliases_path
    aliases.write_text('{"aliases": {"production": "one"}}')
    res, _ = serve_cli("--root", str(registry.root))
    assert res.exit_code == 2 and str(aliases) in res.output and "Traceback" not in res.output, res.output
    aliases.write_text('{"aliases": {"production": 1}}')
    version_json = registry.get(1) / "version.json"
    os.chmod(version_json, 0o644)
    version_json.write_text("{not json")
    res, _ = serve_cli("--root", str(registry.root))
    assert res.exit_code == 2 and str(version_json) in res.output and "Traceback" not in res.output, res.output
    assert no_run == []


# ------------------------------------------------------------------------------------------- 2: NaN models
def _tamper_weights(registry: Registry, version: int, fn) -> None:
    """Change a registered version's weights (as an old registry, a disk fault or a person could)."""
    path = registry.get(version) / "model.safetensors"
    tensors = load_file(path)
    os.chmod(path, 0o644)
    save_file({k: fn(k, v) for k, v in tensors.items()}, str(path))


@pytest.mark.parametrize("poison", ["nan", "huge"])
def test_model_with_bad_outputs_is_never_swapped_in(registry, good_dir, poison):
    """NaN weights (caught by the weight check) and finite-but-huge weights (caught by the warm-up's output
    check) both leave the old model serving, and /health says so at once."""
    v = register(registry, good_dir)

    def poisoned(name, t):
        if t.is_floating_point():
            if poison == "nan":
                t = t.clone()
                t.view(-1)[0] = float("nan")
            elif "weight" in name:
                t = torch.full_like(t, 3e38)
        return t

    _tamper_weights(registry, v, poisoned)
    ctx = contexts()
    with TestClient(create_app(registry.root, poll_interval=0.05)) as client:
        registry.promote(v)
        health = client.get("/health").json()
        assert health["status"] != "ok" and health["alias_version"] == v and health["version"] == 1, health
        deadline = time.monotonic() + 10
        while (health := client.get("/health").json())["status"] != "degraded":
            assert health["status"] == "loading", health
            assert time.monotonic() < deadline, health
            time.sleep(0.02)
        assert health["version"] == 1 and health["alias_version"] == v
        assert ("non-finite" if poison == "nan" else "warm-up check") in health["last_reload_error"]
        r = client.post("/predict", json={"contexts": ctx.tolist()})
        assert r.status_code == 200 and r.json()["version"] == 1
        np.testing.assert_allclose(r.json()["vectors"], expected(good_dir, ctx), atol=1e-5)
        registry.rollback()
        deadline = time.monotonic() + 10
        while (health := client.get("/health").json())["status"] != "ok":
            assert time.monotonic() < deadline, health
            time.sleep(0.02)
        assert health["last_reload_error"] is None and health["alias_version"] == 1


# ------------------------------------------------------------------------------------------- 8: huge inputs
@pytest.mark.parametrize("magnitude", [1e7, 1e30, 3e38])
def test_huge_finite_inputs_are_refused(registry, magnitude):
    ctx = contexts()
    ctx[0, 2, 7] = magnitude
    with TestClient(create_app(registry.root)) as client:
        r = client.post("/predict", json={"contexts": ctx.tolist()})
        assert r.status_code == 422, r.text
        assert "beyond +-1e+06" in r.json()["detail"] and "contexts[0][2][7]" in r.json()["detail"]
        ok_predict(client, version=1)


def test_large_inputs_within_the_limit_give_unit_vectors(tmp_path):
    reg = Registry(tmp_path / "registry")
    folder = make_model_dir(tmp_path / "res", seed=3)
    config = json.loads((folder / "config.json").read_text())
    config["residual"] = True  # the output carries the input's scale: 1e6 squared summed overflows nothing
    (folder / "config.json").write_text(json.dumps(config))
    register(reg, folder, alias="production")
    with TestClient(create_app(reg.root)) as client:
        for scale in (1.0, 1e3, 1e6):
            r = client.post("/predict", json={"contexts": (contexts(batch=2) * scale).tolist()})
            assert r.status_code == 200, r.text
            vectors = np.asarray(r.json()["vectors"], dtype=np.float64)
            assert np.isfinite(vectors).all()
            np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_predict_normalises_huge_outputs_and_refuses_non_finite_ones():
    class Scaled(torch.nn.Module):
        def __init__(self, value):
            super().__init__()
            self.value = value

        def forward(self, x):
            out = x[:, -1, :].clone()
            out[0] = self.value
            return out

    ctx = contexts(batch=2)
    state = LoadedModel(version=7, model=Scaled(1e30), config={}, info={}, dim=DIM, context=CONTEXT)
    vectors = server._predict(state, ctx)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)  # not the all-zero vector
    for value in (float("nan"), float("inf"), 0.0):
        state = LoadedModel(version=7, model=Scaled(value), config={}, info={}, dim=DIM, context=CONTEXT)
        with pytest.raises(HTTPException) as info:
            server._predict(state, ctx)
        assert info.value.status_code == 422 and "contexts[0]" in info.value.detail


# ------------------------------------------------------------------------------------------- 15: limits
def test_content_type_must_be_json(registry):
    with TestClient(create_app(registry.root)) as client:
        body = json.dumps({"contexts": contexts().tolist()}).encode()
        for headers in ({"content-type": "text/plain"}, {}, {"content-type": "application/x-www-form-urlencoded"}):
            r = client.post("/predict", content=body, headers=headers)
            assert r.status_code == 415, r.text
            assert "Content-Type must be application/json" in r.json()["detail"]
        r = client.post("/predict", content=body, headers={"content-type": "Application/JSON; charset=utf-8"})
        assert r.status_code == 200


def test_next_refuses_overlong_sentences(registry, tmp_path):
    from conftest import make_table

    from lvm.data.dataset import write_table
    from lvm.ingest.encoders import HashEncoder

    bank = tmp_path / "bank.parquet"
    write_table(make_table(n_articles=2, length=8, dim=DIM), bank)
    with TestClient(create_app(registry.root, encoder=HashEncoder(DIM), bank_path=bank)) as client:
        r = client.post("/next", content=json.dumps({"sentences": ["a b."] * 5}),
                        headers={"content-type": "text/plain"})
        assert r.status_code == 415, r.text
        sentences = ["a short one."] * 4 + ["word " * 400_000]  # 2 MB
        t = time.monotonic()
        r = client.post("/next", json={"sentences": sentences})
        assert r.status_code == 413, r.text
        assert "sentences[4] has 2000000 characters" in r.json()["detail"]
        assert f"limit of {MAX_SENTENCE_CHARS}" in r.json()["detail"]
        assert time.monotonic() - t < 2.0
        # an early long sentence is not encoded, so it is not refused
        r = client.post("/next", json={"sentences": ["x" * 20_000] + ["a short one."] * 5})
        assert r.status_code == 200, r.text


def _uvicorn_in_thread(app):
    import uvicorn

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.02)
    return srv, thread, port


def _read_response(sock) -> bytes:
    """One whole HTTP response (headers and its Content-Length body): TCP may deliver it in several pieces."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def test_slow_body_gets_408(registry):
    srv, thread, port = _uvicorn_in_thread(create_app(registry.root, body_timeout=0.5))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            t = time.monotonic()
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n" + b'{"contexts"')  # 11 of the 1000 bytes, then nothing
            reply = _read_response(sock)
            took = time.monotonic() - t
        assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
        assert b"not received within 0.5 s" in reply and took < 5.0
        # the server still answers others
        import httpx

        r = httpx.post(f"http://127.0.0.1:{port}/predict", json={"contexts": contexts().tolist()}, timeout=10)
        assert r.status_code == 200
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


@pytest.mark.parametrize("token", ["   ", "", "\t"])
def test_a_blank_token_is_refused_before_start_up(registry, no_run, token):
    res, _ = serve_cli("--root", str(registry.root), "--host", "0.0.0.0", "--token", token)
    assert res.exit_code == 2 and "error:" in res.output and "blank" in res.output and no_run == [], res.output


def test_a_token_with_spaces_around_it_is_compared_stripped(registry):
    with TestClient(create_app(registry.root, token="abc ")) as client:
        body = {"contexts": contexts().tolist()}
        for header in ("Bearer abc", "Bearer abc ", "Bearer  abc"):
            assert client.post("/predict", json=body, headers={"Authorization": header}).status_code == 200, header
        assert client.post("/predict", json=body, headers={"Authorization": "Bearer abd"}).status_code == 401


def test_with_a_token_the_api_pages_are_off_and_without_one_they_are_served(registry):
    with TestClient(create_app(registry.root, token="abc")) as client:
        for page in ("/docs", "/redoc", "/openapi.json"):
            assert client.get(page).status_code == 404, page
        assert client.get("/health").status_code == 200
    with TestClient(create_app(registry.root)) as client:
        assert client.get("/openapi.json").status_code == 200 and client.get("/docs").status_code == 200


@pytest.mark.parametrize("field", ["contexts", "article"])
def test_a_boolean_among_the_numbers_is_refused_not_read_as_one(tmp_path, field):
    reg = Registry(tmp_path / "registry")
    folder = make_model_dir(tmp_path / "art", seed=3)
    config = json.loads((folder / "config.json").read_text())
    if field == "article":
        config["article"] = True
        (folder / "config.json").write_text(json.dumps(config))
    register(reg, folder, alias="production")
    ctx = contexts().tolist()
    body = {"contexts": ctx}
    if field == "contexts":
        ctx[0][1][3] = True
    else:
        body["article"] = [[0.1] * len(ctx[0][0]) for _ in ctx]
        body["article"][0][2] = False
    with TestClient(create_app(reg.root)) as client:
        r = client.post("/predict", json=body)
        assert r.status_code == 422 and "boolean" in r.json()["detail"], r.text
        assert (f"{field}[0][1][3]" if field == "contexts" else "article[0][2]") in r.json()["detail"]
