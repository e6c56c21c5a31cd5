"""A local stand-in for the Hugging Face Hub, served over HTTP on 127.0.0.1 for the real client.

It implements just the endpoints that ``huggingface_hub`` (2.x) calls to create a repo and a branch,
open a pull request, commit files (every file is declared a "regular" upload, so contents arrive
base64-encoded inside the NDJSON commit and no LFS/Xet storage is involved), read repo info and
download files (``/resolve/`` with ``X-Repo-Commit``, ``ETag`` and ``Content-Length``). Repos live in
memory as commits of ``{path: bytes}``.

Use :func:`fake_hub` in a test: it starts the server, points the client at it (``HF_ENDPOINT``,
offline mode off, a test token, a private download cache) with ``monkeypatch`` and stops it after.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from huggingface_hub import ModelCard

TOKEN = "hf_fake_test_token_0123456789"
_REPO = r"(?P<repo>[^/]+/[^/]+)"
_ROUTES = [
    ("POST", "create", re.compile(r"^/api/repos/create$")),
    ("POST", "validate_yaml", re.compile(r"^/api/validate-yaml$")),
    ("POST", "preupload", re.compile(rf"^/api/models/{_REPO}/preupload/(?P<rev>.+)$")),
    ("POST", "commit", re.compile(rf"^/api/models/{_REPO}/commit/(?P<rev>.+)$")),
    ("POST", "branch", re.compile(rf"^/api/models/{_REPO}/branch/(?P<rev>.+)$")),
    ("POST", "discussion", re.compile(rf"^/api/models/{_REPO}/discussions$")),
    ("GET", "discussion_details", re.compile(rf"^/api/models/{_REPO}/discussions/(?P<num>\d+)$")),
    ("GET", "info", re.compile(rf"^/api/models/{_REPO}(?:/revision/(?P<rev>.+))?$")),
    ("GET", "tree", re.compile(rf"^/api/models/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?$")),
    ("GET", "resolve", re.compile(rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")),
    ("HEAD", "resolve", re.compile(rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")),
]


@dataclass
class Commit:
    """One commit: the whole tree after it, its message and its parent."""

    files: dict[str, bytes]
    message: str
    parent: str | None


@dataclass
class Repo:
    """A model repo: refs (branch names and ``refs/pr/N``) pointing at commits."""

    private: bool
    refs: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    pulls: list[dict[str, Any]] = field(default_factory=list)

    def resolve(self, revision: str) -> str | None:
        """Commit id of a ref name or a commit id; ``None`` if unknown."""
        return self.refs.get(revision) or (revision if revision in self.commits else None)


class HubError(Exception):
    """An error answer: HTTP status, Hub error code (``X-Error-Code``) and message."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class FakeHub:
    """The in-memory Hub and its HTTP server.

    Attributes:
        repos: Repos by id.
        requests: ``(method, route, path, authorized)`` of every request received, in order.
        failures: Route names (``"create"``, ``"commit"``, ...) mapped to ``(status, message)``:
            requests to that route are answered with that error until the entry is removed.
        token: The token that write requests must carry (``Authorization: Bearer``).
    """

    def __init__(self, token: str = TOKEN, repos: dict[str, Repo] | None = None) -> None:
        self.repos: dict[str, Repo] = {} if repos is None else repos
        self.requests: list[tuple[str, str, str, bool]] = []
        self.failures: dict[str, tuple[int, str]] = {}
        self.token = token
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Base URL of the server (what ``HF_ENDPOINT`` is set to)."""
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        """Serve in a background thread."""
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """The files of ``repo_id`` at ``revision`` (branch, ``refs/pr/N`` or commit id)."""
        repo = self.repos[repo_id]
        sha = repo.resolve(revision)
        if sha is None:
            raise KeyError(f"{repo_id} has no revision {revision!r}; refs: {sorted(repo.refs)}")
        return dict(repo.commits[sha].files)

    # -- request handling (called by the handler thread, under the lock) -------------------------

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> tuple[int, dict, bytes]:
        split = urlsplit(raw_path)
        query = parse_qs(split.query)
        for route_method, name, pattern in _ROUTES:
            match = pattern.match(split.path)
            if route_method != method or match is None:
                continue
            args = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
            authorized = headers.get("authorization") == f"Bearer {self.token}"
            with self.lock:
                self.requests.append((method, name, split.path, authorized))
                try:
                    if name in self.failures:
                        raise HubError(*self.failures[name])
                    if method == "POST" and not authorized:
                        raise HubError(401, "Invalid credentials in Authorization header")
                    return getattr(self, f"_{name}")(args, query, body, method)
                except HubError as error:
                    return _error(error)
        return _error(HubError(404, f"no route for {method} {split.path}"))

    def _repo(self, args: dict[str, str]) -> Repo:
        repo = self.repos.get(args["repo"])
        if repo is None:
            raise HubError(404, f"Repository Not Found for {args['repo']}", "RepoNotFound")
        return repo

    def _commit_of(self, repo: Repo, revision: str) -> str:
        sha = repo.resolve(revision)
        if sha is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return sha

    def _create(self, args, query, body, method):
        payload = json.loads(body)
        if not payload.get("organization"):
            raise HubError(400, "the fake hub needs an explicit namespace: org/name")
        repo_id = f"{payload['organization']}/{payload['name']}"
        if repo_id in self.repos:
            return _json(
                409, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"}
            )
        repo = Repo(private=payload.get("visibility") == "private")
        sha = _add_commit(
            repo,
            {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"},
            "initial commit",
            None,
        )
        repo.refs["main"] = sha
        self.repos[repo_id] = repo
        return _json(200, {"url": f"{self.url}/{repo_id}", "name": repo_id})

    def _validate_yaml(self, args, query, body, method):
        # The Hub checks a README's metadata before a commit; parsing it as a strict model card is the
        # closest local stand-in (invalid YAML or a malformed model-index fail).
        try:
            ModelCard(json.loads(body)["content"], ignore_metadata_errors=False)
        except Exception as error:
            return _json(400, {"errors": [{"message": str(error)}], "warnings": []})
        return _json(200, {"errors": [], "warnings": []})

    def _branch(self, args, query, body, method):
        repo = self._repo(args)
        if args["rev"] in repo.refs:
            raise HubError(409, f"Reference {args['rev']} already exists")
        start = (json.loads(body) if body else {}).get("startingPoint") or "main"
        repo.refs[args["rev"]] = self._commit_of(repo, start)
        return _json(200, {})

    def _preupload(self, args, query, body, method):
        repo = self._repo(args)
        if "create_pr" not in query:
            self._commit_of(repo, args["rev"])
        files = json.loads(body)["files"]
        return _json(
            200,
            {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]},
        )

    def _commit(self, args, query, body, method):
        repo = self._repo(args)
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        revision, pr_url = args["rev"], None
        if "create_pr" in query:
            revision, pr_url = self._open_pull(repo, args["repo"], header["summary"])
        parent = self._commit_of(repo, revision)
        files = dict(repo.commits[parent].files)
        for line in lines:
            key, value = line["key"], line["value"]
            if key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key != "header":
                raise HubError(422, f"the fake hub takes regular files only, got {key!r}")
        sha = _add_commit(repo, files, header["summary"], parent)
        repo.refs[revision] = sha
        return _json(
            200,
            {
                "commitUrl": f"{self.url}/{args['repo']}/commit/{sha}",
                "commitOid": sha,
                "pullRequestUrl": pr_url,
            },
        )

    def _open_pull(self, repo: Repo, repo_id: str, title: str) -> tuple[str, str]:
        num = len(repo.pulls) + 1
        ref = f"refs/pr/{num}"
        repo.refs[ref] = repo.refs["main"]
        repo.pulls.append({"num": num, "title": title})
        return ref, f"{self.url}/{repo_id}/discussions/{num}"

    def _discussion(self, args, query, body, method):
        repo = self._repo(args)
        payload = json.loads(body)
        if not payload.get("pullRequest"):
            raise HubError(400, "the fake hub only opens pull requests")
        self._open_pull(repo, args["repo"], payload["title"])
        return _json(
            200, {"num": len(repo.pulls), "url": f"{self.url}/{args['repo']}/discussions/{len(repo.pulls)}"}
        )

    def _discussion_details(self, args, query, body, method):
        repo = self._repo(args)
        num = int(args["num"])
        if not 1 <= num <= len(repo.pulls):
            raise HubError(404, f"Discussion {num} not found")
        return _json(
            200,
            {
                "title": repo.pulls[num - 1]["title"],
                "num": num,
                "author": {"name": "tester"},
                "createdAt": "2025-01-01T00:00:00.000Z",
                "status": "draft",
                "repo": {"name": args["repo"], "type": "model"},
                "isPullRequest": True,
                "changes": {"base": "refs/heads/main"},
                "filesWithConflicts": [],
                "events": [],
            },
        )

    def _info(self, args, query, body, method):
        repo = self._repo(args)
        sha = self._commit_of(repo, args.get("rev", "main"))
        siblings = [{"rfilename": path} for path in sorted(repo.commits[sha].files)]
        return _json(200, {"id": args["repo"], "sha": sha, "private": repo.private, "siblings": siblings})

    def _tree(self, args, query, body, method):
        repo = self._repo(args)
        files = repo.commits[self._commit_of(repo, args["rev"])].files
        prefix = args["path"].rstrip("/") + "/" if "path" in args else ""
        entries = [
            {"type": "file", "path": path, "size": len(content), "oid": _blob_id(content)}
            for path, content in sorted(files.items())
            if path.startswith(prefix)
        ]
        return _json(200, entries)

    def _resolve(self, args, query, body, method):
        repo = self._repo(args)
        sha = self._commit_of(repo, args["rev"])
        content = repo.commits[sha].files.get(args["path"])
        if content is None:
            raise HubError(404, f"Entry not found: {args['path']}", "EntryNotFound")
        headers = {
            "X-Repo-Commit": sha,
            "ETag": f'"{_blob_id(content)}"',
            "Content-Type": "application/octet-stream",
        }
        return 200, headers, content


def _blob_id(content: bytes) -> str:
    """The git blob id of a file, which the Hub uses as the ETag of files not stored in LFS."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _add_commit(repo: Repo, files: dict[str, bytes], message: str, parent: str | None) -> str:
    digest = hashlib.sha1(repr((parent, message, len(repo.commits))).encode())
    for path in sorted(files):
        digest.update(path.encode() + b"\0" + files[path])
    sha = digest.hexdigest()
    repo.commits[sha] = Commit(files, message, parent)
    return sha


def _json(status: int, payload: Any) -> tuple[int, dict, bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()


def _error(error: HubError) -> tuple[int, dict, bytes]:
    status, headers, body = _json(error.status, {"error": error.message})
    headers["X-Error-Message"] = error.message
    if error.code:
        headers["X-Error-Code"] = error.code
    return status, headers, body


def _handler_for(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, headers, content = hub.handle(method, self.path, self.headers, body)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(content)

        def do_GET(self) -> None:
            self._answer("GET")

        def do_HEAD(self) -> None:
            self._answer("HEAD")

        def do_POST(self) -> None:
            self._answer("POST")

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

    return Handler


@contextmanager
def fake_hub(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    token: str | None = TOKEN,
    repos: dict[str, Repo] | None = None,
) -> Iterator[FakeHub]:
    """Serve a :class:`FakeHub` and point ``huggingface_hub`` at it for the duration of the block.

    ``huggingface_hub`` reads its settings when it is imported, so the module constants are patched
    along with the environment (which subprocesses and peft read). Downloads go to a cache under
    ``tmp_path``; no stored login is visible, and ``HF_TOKEN`` is ``token`` (unset when ``None``).
    ``repos`` serves the repos of an earlier hub again (they are shared, not copied).
    """
    import huggingface_hub.constants as constants
    import huggingface_hub.hf_api as hf_api

    hub = FakeHub(repos=repos).start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
        if token is None:
            monkeypatch.delenv("HF_TOKEN", raising=False)
        else:
            monkeypatch.setenv("HF_TOKEN", token)
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(
            constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}"
        )
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
        # The module-level client behind `huggingface_hub.file_exists` & co. froze its endpoint at import.
        monkeypatch.setattr(hf_api.api, "endpoint", hub.url)
        yield hub
    finally:
        hub.stop()
