"""Output folders that appear whole or not at all: staged beside ``--out``, locked, with a manifest.

``evaluate``, ``export`` and ``publish`` write through :class:`OutFolder`. Everything goes into a hidden
staging folder beside the target (``.NAME.partial-PID``). Only when the command has finished is a
``manifest.json`` written and the staging folder renamed into place, one ``rename`` on the same file
system. A run that is killed leaves the target as it was; its staging folder is cleaned up by the
next run. An advisory lock on ``.NAME.lock`` (``filelock``; the kernel releases it when its process
dies, so a killed run never leaves a stale lock) stops two runs from writing one folder; the lock
file itself stays, empty. A target that is not empty is refused unless ``overwrite`` is given.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from filelock import FileLock, Timeout

#: File every finished output folder holds; ``upload`` refuses a folder without a valid one.
MANIFEST = "manifest.json"


class OutFolderError(ValueError):
    """The output folder cannot be written: not empty, locked by another run, or incomplete."""


class OutFolder:
    """Stage a command's output folder and move it into place only when the command succeeds.

    Use it as a context manager; the body writes into the path it returns::

        with OutFolder("runs/eval", "evaluate", {"data_json": "val.json"}) as folder:
            (folder / "metrics.json").write_text("{}")
        # runs/eval now holds metrics.json and manifest.json, or (on an error) is as it was.

    Args:
        out: The folder the command's results end up in.
        command: What wrote it (``evaluate``, ``publish``...), recorded in the manifest.
        inputs: What it was made from (paths and settings), recorded in the manifest; files among
            them are recorded with their size.
        overwrite: Replace a non-empty ``out``; without it such a folder is refused before any work.

    Raises:
        OutFolderError: On entering, if ``out`` is a file, is not empty (without ``overwrite``), or
            another live process holds its lock.
    """

    def __init__(self, out: str | os.PathLike, command: str, inputs: dict[str, Any], overwrite: bool = False):
        self.out = Path(out).absolute()
        self.command = command
        self.inputs = inputs
        self.overwrite = overwrite
        self.lock = self.out.with_name(f".{self.out.name}.lock")
        self.staging = self.out.with_name(f".{self.out.name}.partial-{os.getpid()}")

    def __enter__(self) -> Path:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        if self.out.exists() and not self.out.is_dir():
            raise OutFolderError(f"--out {self.out} is a file, not a folder")
        self._lock = FileLock(self.lock)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise OutFolderError(
                f"--out {self.out} is being written by another run (it holds {self.lock}); wait for it to "
                "finish or choose another folder"
            ) from None
        try:
            if not self.overwrite and self.out.is_dir() and any(self.out.iterdir()):
                raise OutFolderError(
                    f"--out {self.out} is not empty (it holds an earlier result); pass --overwrite true "
                    "(overwrite=True from Python) to replace it, or choose another folder"
                )
            for stale in self.out.parent.glob(f".{self.out.name}.partial-*"):
                shutil.rmtree(stale, ignore_errors=True)  # left by a killed run; we hold the lock
            self.staging.mkdir()
        except BaseException:
            self._lock.release()
            raise
        return self.staging

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            if kind is None:
                self._finish()
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)
            # The lock file stays: deleting it would let a waiting process lock a file no longer there.
            self._lock.release()

    def _finish(self) -> None:
        manifest = {
            "command": self.command,
            "complete": True,
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "host": socket.gethostname(),
            "sam3_adapt": _kit_version(),
            "inputs": {key: _describe(value) for key, value in self.inputs.items()},
            "files": file_list(self.staging),
        }
        (self.staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _fsync_tree(self.staging)
        old = self.out.with_name(f".{self.out.name}.old-{os.getpid()}")
        replaced = self.out.exists() and any(self.out.iterdir())
        if replaced:
            os.replace(self.out, old)
        elif self.out.exists():
            self.out.rmdir()
        os.replace(self.staging, self.out)
        _fsync_dir(self.out.parent)
        if replaced:
            shutil.rmtree(old, ignore_errors=True)


def file_list(folder: Path) -> dict[str, dict[str, Any]]:
    """Every file under ``folder`` but the manifest, by relative path, with its size and SHA-256."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative != MANIFEST:
            files[relative] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
    return files


def check_complete(folder: str | os.PathLike, command: str | None = None) -> dict[str, Any]:
    """The manifest of a finished output folder, after checking that every file it lists is intact.

    Args:
        folder: A folder written through :class:`OutFolder`.
        command: The command that must have written it (``None``: any).

    Returns:
        The manifest.

    Raises:
        OutFolderError: If the folder is missing, has no valid manifest, was written by another
            command, or a listed file is missing or changed (sizes and SHA-256 are compared).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise OutFolderError(f"{folder} does not exist or is not a folder")
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as error:
        raise OutFolderError(
            f"{folder} has no readable {MANIFEST}: it was not written to the end by sam3-adapt "
            f"({type(error).__name__}); write it again"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("complete") is not True:
        raise OutFolderError(f"{folder / MANIFEST} does not mark the folder complete; write it again")
    if command is not None and manifest.get("command") != command:
        raise OutFolderError(
            f"{folder} was written by {manifest.get('command')!r}, not {command!r}: give the folder "
            f"`sam3-adapt {command}` wrote"
        )
    listed = manifest.get("files")
    if not isinstance(listed, dict) or not listed:
        raise OutFolderError(f"{folder / MANIFEST} lists no files; write the folder again")
    for relative, facts in listed.items():
        path = folder / relative
        if not path.is_file():
            raise OutFolderError(f"{folder}: {relative} is listed in {MANIFEST} but missing")
        if path.stat().st_size != facts.get("bytes") or _sha256(path) != facts.get("sha256"):
            raise OutFolderError(f"{folder}: {relative} changed since it was written (size or SHA-256)")
    return manifest


def _describe(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_describe(v) for v in value]
    if isinstance(value, (str, os.PathLike)) and Path(value).is_file():
        return {"path": str(Path(value).absolute()), "bytes": Path(value).stat().st_size}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as file:
                os.fsync(file.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _kit_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sam3-adapt")
    except PackageNotFoundError:
        return "unknown"
