"""Upload a published folder to the Hugging Face Hub (``sam3-adapt upload``); on failure, say how to retry."""

from __future__ import annotations

import shlex
from pathlib import Path

from huggingface_hub import HfApi, get_token
from huggingface_hub.utils import HFValidationError, validate_repo_id

from sam3_adapt.fitting.out_folder import check_complete


class PublishError(RuntimeError):
    """Publishing stopped: no token to upload with, or the upload failed (the message says how to retry)."""


def upload(
    folder: str,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
) -> str:
    """Upload a published folder to a Hub model repo, creating the repo and the branch when missing.

    The folder must be one ``publish`` finished: its ``manifest.json`` must list every file, unchanged
    (sizes and SHA-256). A folder that a killed ``publish`` left, or that was edited since, is refused
    before anything is sent.

    Args:
        folder: The folder ``publish`` wrote.
        repo_id: Hub repo (``org/name``).
        private: Create the repo private (an existing repo keeps its visibility).
        revision: Branch to push to (created from ``main`` if missing); default ``main``.
        commit_message: Commit message.
        create_pr: Open a pull request instead of pushing to the branch.

    Returns:
        The URL of the commit, or of the pull request.

    Raises:
        ValueError: If ``repo_id`` is malformed or ``create_pr`` is combined with ``revision``.
        OutFolderError: If ``folder`` is missing or is not a complete, unchanged ``publish`` folder.
        PublishError: If no token is found, or the upload fails (the folder is left as it is and the
            message gives the command that retries).
    """
    check_complete(folder, "publish")
    token = check_upload_args(repo_id, revision, create_pr)
    return upload_folder(Path(folder), repo_id, token, private, revision, commit_message, create_pr)


def upload_folder(
    folder: Path,
    repo_id: str,
    token: str,
    private: bool,
    revision: str | None,
    commit_message: str | None,
    create_pr: bool,
) -> str:
    """Create the repo (and branch) if missing and upload ``folder``; the token was checked already."""
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision is not None:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            revision=revision,
            commit_message=commit_message or "Upload with sam3-adapt",
            create_pr=create_pr,
        )
    except Exception as error:  # any failure leaves the same folder to send again
        retry = ["hf", "upload", repo_id, str(folder), "."]
        retry += ["--revision", revision] if revision else []
        retry += ["--private"] if private else []
        retry += ["--create-pr"] if create_pr else []
        retry += ["--commit-message", commit_message] if commit_message else []
        raise PublishError(
            f"upload of {folder} to {repo_id} failed: {type(error).__name__}: {error}\n"
            "The folder is complete and unchanged; once the cause is fixed, retry with:\n"
            f"  {shlex.join(retry)}"
        ) from error
    url = info.pr_url or info.commit_url
    print(f"uploaded {folder} to {repo_id}: {url}")
    return url


def check_upload_args(repo_id: str, revision: str | None, create_pr: bool) -> str:
    """Validate the upload settings and return the token, before any file is written or request sent."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"malformed Hub repo id {repo_id!r}: {error} (expected 'org/name')") from error
    if create_pr and revision is not None:
        raise ValueError("--create_pr opens the pull request against main; leave --revision out")
    token = get_token()
    if token is None:
        raise PublishError(
            f"uploading to {repo_id} needs a Hugging Face token with write access: run `hf auth login` or "
            "set HF_TOKEN, then publish again (nothing was written or sent)"
        )
    return token
