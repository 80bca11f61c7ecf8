"""Versioned model store with aliases and atomic promote/rollback.

Layout under ``root`` (default ``lvm.util.paths.registry_dir()``: ``data/registry``, or ``$LVM_DATA_DIR/registry``)::

    versions/v1/            immutable copy of a trained model folder (files made read-only)
        model.safetensors
        config.json
        metrics.json
        history.json        (when the model folder had one)
        version.json        {version, arch, dim, context, metrics, data_hash, encoder, encoder_dim,
                             created_at, flow_run_id, files, lineage}; README.md its model card
        articles.json       (when given) the article ids of each split part the model saw: what the next
                            retrain compares its corpus with (new articles) and its split with (no leak)
    versions/.tmp-*         a registration in progress, or left over by a crash: never listed, removed
                            by the next registration
    aliases.json            {"aliases": {"production": 3, "candidate": 4},
                             "history": {"production": [1, 2]},      previous versions, oldest first
                             "log": [{"at", "action", "alias", "from", "to"}, ...],
                             "updated_at": ...}
    .lock                   file lock held around every mutation
    .aliases.json.*.tmp     a write of aliases.json in progress, or left by a killed writer: removed by the
                            next mutation (under the lock no other writer can be in progress)

Guarantees:

* A version appears all-or-nothing: it is written into a temporary folder and moved into place with one
  ``os.rename``. Its number is chosen under the lock, so concurrent registrations (threads or processes) get
  distinct numbers.
* ``aliases.json`` is replaced atomically (temporary file, fsync, ``os.replace``), so a reader (the LVM server
  polls it) sees either the old or the new file, never a partial one. A crash between writing a version and
  moving an alias leaves every alias where it was.
* ``rollback("production")`` moves the alias back to the version it pointed to before the last promotion.
  Each alias keeps its last ``HISTORY_LIMIT`` previous versions (and the file its last ``LOG_LIMIT`` log
  entries), so a registry promoted on every retrain does not grow without bound.
* A model whose ``model.safetensors`` cannot be parsed or holds NaN/Infinity is refused at ``register``.
* A tampered ``aliases.json`` or ``version.json`` (invalid JSON, wrong types) is a ``RegistryError`` naming the file.

This module only needs the standard library and ``filelock`` (numpy for the weight check); never torch.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
import stat
import uuid
from pathlib import Path

from filelock import FileLock

from lvm.store.model_card import model_card
from lvm.store.version_files import (  # noqa: F401  (the errors and checks are part of the registry's API)
    RegistryError,
    UnknownAliasError,
    UnknownVersionError,
    _is_count,
    _read_json,
    _read_registry_json,
    check_weights,
    read_version_info,
)
from lvm.util.atomic import fsync_dir, write_json
from lvm.util.paths import registry_dir

REQUIRED_FILES = ("model.safetensors", "config.json")
KNOWN_ALIASES = ("production", "candidate")
LOCK_TIMEOUT_S = 120.0
LOG_LIMIT = 200
HISTORY_LIMIT = 100  # previous versions kept per alias: how far back `rollback` can walk
_ALIASES_TMP_GLOB = ".aliases.json.*.tmp"
_VERSION_DIR = re.compile(r"^v(\d+)$")
_VERSION_REF = re.compile(r"^v?(\d+)$")
_ALIAS_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class Registry:
    """A folder of immutable model versions plus movable aliases (``production``, ``candidate``)."""

    def __init__(self, root: str | os.PathLike[str] | None = None, *, lock_timeout: float = LOCK_TIMEOUT_S):
        self.root = Path(root) if root is not None else registry_dir()
        self.versions_dir = self.root / "versions"
        self.aliases_path = self.root / "aliases.json"
        self.lock_path = self.root / ".lock"
        self.lock_timeout = lock_timeout

    def __repr__(self) -> str:
        return f"Registry({str(self.root)!r})"

    # ------------------------------------------------------------------ locking
    def _lock(self) -> FileLock:
        self.root.mkdir(parents=True, exist_ok=True)
        # A fresh lock object per mutation: the OS lock (flock on its own file descriptor) then also
        # serialises threads of one process, not only processes.
        return FileLock(str(self.lock_path), timeout=self.lock_timeout, thread_local=False)

    # ------------------------------------------------------------------ versions
    def _version_numbers(self) -> list[int]:
        if not self.versions_dir.is_dir():
            return []
        out = []
        for entry in self.versions_dir.iterdir():
            m = _VERSION_DIR.match(entry.name)
            if m and (entry / "version.json").is_file():
                out.append(int(m.group(1)))
        return sorted(out)

    def _next_number(self) -> int:
        # Count every v<N> folder, complete or not, so a number is never reused.
        highest = 0
        if self.versions_dir.is_dir():
            for entry in self.versions_dir.iterdir():
                m = _VERSION_DIR.match(entry.name)
                if m:
                    highest = max(highest, int(m.group(1)))
        return highest + 1

    def _clean_tmp(self) -> None:
        """Remove folders left by a registration that crashed (we hold the lock, so none is in progress)."""
        if not self.versions_dir.is_dir():
            return
        for entry in self.versions_dir.iterdir():
            if entry.name.startswith(".tmp-") and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)

    def parse_version(self, ref: int | str) -> int:
        """``3``, ``"3"`` or ``"v3"`` -> 3 (no existence check)."""
        if isinstance(ref, bool):
            raise UnknownVersionError(f"not a version: {ref!r}")
        if isinstance(ref, int):
            return ref
        m = _VERSION_REF.match(str(ref).strip())
        if not m:
            raise UnknownVersionError(f"not a version: {ref!r} (expected a number like 3 or 'v3')")
        return int(m.group(1))

    def _require_version(self, version: int) -> Path:
        path = self.versions_dir / f"v{version}"
        if not (path / "version.json").is_file():
            known = self._version_numbers()
            listing = ", ".join(f"v{n}" for n in known) if known else "none"
            raise UnknownVersionError(f"unknown version v{version} in registry {self.root} (versions: {listing})")
        return path

    def register(
        self,
        model_dir: str | os.PathLike[str],
        *,
        data_hash: str | None,
        encoder: str | None,
        encoder_dim: int | None,
        flow_run_id: str | None = None,
        metrics: dict | None = None,
        alias: str | None = None,
        lineage: dict | None = None,
        articles: dict[str, list[str]] | None = None,
    ) -> int:
        """Copy a trained model folder into a new immutable version; optionally point ``alias`` at it.

        ``lineage`` (JSON-able: data hash, split record, articles added, code version, flow run id, ...) is kept in
        version.json so every version says where it came from; ``articles`` (part -> article ids) goes to
        articles.json, too big for version.json on a large corpus. Returns the new version number.
        """
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise RegistryError(f"model folder {model_dir} does not exist")
        missing = [name for name in REQUIRED_FILES if not (model_dir / name).is_file()]
        if missing:
            raise RegistryError(f"model folder {model_dir} lacks {', '.join(missing)}")
        config = _read_registry_json(model_dir / "config.json")
        for key in ("arch", "dim", "context"):
            if key not in config:
                raise RegistryError(f"{model_dir / 'config.json'} has no {key!r}")
        for key in ("dim", "context"):
            if not (_is_count(config[key]) and config[key] > 0):
                raise RegistryError(f"{model_dir / 'config.json'}: {key!r} must be a positive integer, "
                                    f"got {config[key]!r}")
        if metrics is None and (model_dir / "metrics.json").is_file():
            metrics = _read_registry_json(model_dir / "metrics.json")
        check_weights(model_dir / "model.safetensors")
        if alias is not None:
            self._check_alias_name(alias)
        if lineage is not None and not isinstance(lineage, dict):
            raise RegistryError(f"lineage must be a dict, got {type(lineage).__name__}")

        from lvm.models.io import MODEL_FILES  # here, not at the top: lvm.models.io imports torch

        with self._lock():
            self.versions_dir.mkdir(parents=True, exist_ok=True)
            self._clean_tmp()
            version = self._next_number()
            tmp = self.versions_dir / f".tmp-v{version}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir()
            try:
                files = []
                for name in MODEL_FILES:
                    src = model_dir / name
                    if src.is_file():
                        shutil.copyfile(src, tmp / name)
                        files.append(name)
                info = {
                    "version": version,
                    "arch": config["arch"],
                    "dim": int(config["dim"]),
                    "context": int(config["context"]),
                    "metrics": metrics or {},
                    "data_hash": data_hash,
                    "encoder": encoder,
                    "encoder_dim": None if encoder_dim is None else int(encoder_dim),
                    "created_at": _utc_now(),
                    "flow_run_id": None if flow_run_id is None else str(flow_run_id),
                    "source": str(model_dir.resolve()),
                    "files": files,
                    "lineage": lineage or {},
                }
                write_json(tmp / "version.json", info, sort_keys=True)  # the folder's rename below is the commit
                (tmp / "README.md").write_text(model_card(info, config))
                extra = ["README.md"]
                if articles is not None:
                    write_json(tmp / "articles.json", {k: sorted(map(str, v)) for k, v in articles.items()})
                    extra.append("articles.json")
                for name in [*files, *extra, "version.json"]:
                    with open(tmp / name, "rb") as fh:
                        os.fsync(fh.fileno())
                    os.chmod(tmp / name, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
                fsync_dir(tmp)
                os.rename(tmp, self.versions_dir / f"v{version}")
                fsync_dir(self.versions_dir)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            if alias is not None:
                self._set_alias(alias, version, action="register")
        return version

    # ------------------------------------------------------------------ aliases
    @staticmethod
    def _check_alias_name(alias: str) -> None:
        if not isinstance(alias, str) or not _ALIAS_NAME.match(alias) or _VERSION_REF.match(alias):
            raise UnknownAliasError(
                f"invalid alias name {alias!r}: use a word such as {' or '.join(KNOWN_ALIASES)}"
            )

    def _read_aliases(self) -> dict:
        path = self.aliases_path
        if not path.exists():
            return {"aliases": {}, "history": {}, "log": []}
        data = _read_registry_json(path)
        data.setdefault("aliases", {})
        data.setdefault("history", {})
        data.setdefault("log", [])
        aliases, history = data["aliases"], data["history"]
        if not isinstance(aliases, dict):
            raise RegistryError(f"{path}: 'aliases' must be an object of alias -> version number, "
                                f"got {type(aliases).__name__}")
        for name, number in aliases.items():
            if not (_is_count(number) and number > 0):
                raise RegistryError(f"{path}: alias {name!r} must point to a version number, got {number!r}")
        if not isinstance(history, dict):
            raise RegistryError(f"{path}: 'history' must be an object of alias -> list of version numbers, "
                                f"got {type(history).__name__}")
        for name, numbers in history.items():
            if not isinstance(numbers, list) or not all(_is_count(n) and n > 0 for n in numbers):
                raise RegistryError(f"{path}: history of alias {name!r} must be a list of version numbers, "
                                    f"got {numbers!r}")
        if not isinstance(data["log"], list):
            raise RegistryError(f"{path}: 'log' must be a list, got {type(data['log']).__name__}")
        return data

    def _clean_alias_tmp(self) -> None:
        """Remove ``.aliases.json.*.tmp`` files of writers killed mid-write. Safe because the caller holds the
        lock: every writer of aliases.json holds it too, so none of these files belongs to a live writer."""
        for tmp in self.root.glob(_ALIASES_TMP_GLOB):
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass

    def _write_aliases(self, data: dict) -> None:
        """Write aliases.json (caller holds the lock), capping the log and each alias's history."""
        self._clean_alias_tmp()
        data["updated_at"] = _utc_now()
        data["log"] = data["log"][-LOG_LIMIT:]
        data["history"] = {name: numbers[-HISTORY_LIMIT:] for name, numbers in data["history"].items()}
        write_json(self.aliases_path, data, fsync=True, sort_keys=True)

    def _set_alias(self, alias: str, version: int, *, action: str) -> None:
        """Point ``alias`` at ``version``; caller holds the lock and has checked the version exists."""
        data = self._read_aliases()
        current = data["aliases"].get(alias)
        if current == version:
            return
        if current is not None:
            data["history"].setdefault(alias, []).append(current)
        data["aliases"][alias] = version
        data["log"].append({"at": _utc_now(), "action": action, "alias": alias, "from": current, "to": version})
        self._write_aliases(data)

    def aliases(self) -> dict[str, int]:
        """Current aliases, e.g. ``{"production": 3, "candidate": 4}``."""
        return dict(self._read_aliases()["aliases"])

    def alias_history(self, alias: str = "production") -> list[int]:
        """Versions ``alias`` pointed to before, oldest first (what ``rollback`` walks back through)."""
        return list(self._read_aliases()["history"].get(alias, []))

    def promote(self, version: int | str, alias: str = "production") -> int:
        """Point ``alias`` at ``version`` (the previous target is kept for ``rollback``). Returns the version."""
        self._check_alias_name(alias)
        number = self.parse_version(version)
        with self._lock():
            self._require_version(number)
            self._set_alias(alias, number, action="promote")
        return number

    def rollback(self, alias: str = "production") -> int:
        """Move ``alias`` back to the version it pointed to before its last promotion. Returns that version."""
        self._check_alias_name(alias)
        with self._lock():
            data = self._read_aliases()
            current = data["aliases"].get(alias)
            if current is None:
                raise UnknownAliasError(f"alias {alias!r} is not set in registry {self.root}: nothing to roll back")
            history = data["history"].get(alias, [])
            if not history:
                raise RegistryError(
                    f"alias {alias!r} has no previous version to roll back to (it points to v{current})"
                )
            previous = history.pop()
            self._require_version(previous)
            data["aliases"][alias] = previous
            data["log"].append({"at": _utc_now(), "action": "rollback", "alias": alias, "from": current,
                                "to": previous})
            self._write_aliases(data)
        return previous

    # ------------------------------------------------------------------ reading
    def resolve(self, alias_or_version: int | str) -> int:
        """An alias name or a version reference -> an existing version number."""
        if isinstance(alias_or_version, str) and not _VERSION_REF.match(alias_or_version.strip()):
            alias = alias_or_version.strip()
            aliases = self._read_aliases()["aliases"]
            if alias not in aliases:
                known = ", ".join(f"{k} -> v{v}" for k, v in sorted(aliases.items())) or "none set"
                raise UnknownAliasError(f"alias {alias!r} is not set in registry {self.root} (aliases: {known})")
            number = int(aliases[alias])
        else:
            number = self.parse_version(alias_or_version)
        self._require_version(number)
        return number

    def get(self, alias_or_version: int | str) -> Path:
        """Folder of a version (``3``, ``"v3"``) or of the version an alias points to (``"production"``)."""
        return self.versions_dir / f"v{self.resolve(alias_or_version)}"

    def _aliases_by_version(self) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for name, number in sorted(self._read_aliases()["aliases"].items()):
            out.setdefault(int(number), []).append(name)
        return out

    def list(self) -> list[dict]:
        """Every complete version (oldest first): its version.json plus ``aliases`` and ``path``."""
        by_version = self._aliases_by_version()
        out = []
        for number in self._version_numbers():
            path = self.versions_dir / f"v{number}"
            info = read_version_info(path)
            info["aliases"] = by_version.get(number, [])
            info["path"] = str(path)
            out.append(info)
        return out

    def articles(self, alias_or_version: int | str) -> dict[str, list[str]] | None:
        """Article ids per split part of a version (articles.json), or None for a version registered without."""
        path = self.get(alias_or_version) / "articles.json"
        if not path.is_file():
            return None
        data = _read_registry_json(path)
        if not all(isinstance(v, list) for v in data.values()):
            raise RegistryError(f"{path}: every part must be a list of article ids")
        return data

    def show(self, alias_or_version: int | str) -> dict:
        """version.json of one version plus ``aliases``, ``path`` and the training ``config``."""
        number = self.resolve(alias_or_version)
        path = self.versions_dir / f"v{number}"
        info = read_version_info(path)
        info["aliases"] = self._aliases_by_version().get(number, [])
        info["path"] = str(path)
        try:
            info["config"] = _read_json(path / "config.json")
        except (OSError, ValueError):
            info["config"] = None
        return info
