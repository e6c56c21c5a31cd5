"""``sam3-adapt review``: the review page's web server (FastAPI on uvicorn).

Routes: ``/`` the page; ``/api/state`` the pair to show and the progress; ``/api/pair/<i>`` a pair;
``/api/act`` one action (written to the journal before the answer); ``/image/<file_name>`` the
round's images, and nothing else (any other name, a path that climbs out included, is a 404).

It binds to 127.0.0.1 and answers only requests addressed to the loopback names. Another host needs
a token: one is made when none is given, and the printed URL carries it; a request without it is
refused (403).
"""

from __future__ import annotations

import secrets
import threading
import webbrowser
from concurrent.futures import ThreadPoolExecutor
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel

from sam3_adapt.engine.journal import JournalConflict
from sam3_adapt.review_page.session import ReviewError, ReviewSession, read_round

#: Host names that mean this machine.
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class Action(BaseModel):
    """One action of the page (see `ReviewSession.act`)."""

    index: int
    action: str
    version: int = 0
    instance: int | None = None
    box: list[float] | None = None
    fix: bool = False


def create_app(session: ReviewSession, token: str | None = None, loopback: bool = True) -> FastAPI:
    """The review page's app over one session.

    Args:
        session: The round under review.
        token: Required on every request (``?token=``, the ``X-Review-Token`` header or the cookie the
            page gets) when given.
        loopback: Answer only requests whose Host is a loopback name (guards a local server against
            pages elsewhere reaching it through a rebound DNS name).

    Returns:
        The FastAPI app.
    """
    app = FastAPI(title="sam3-adapt review", docs_url=None, redoc_url=None, openapi_url=None)
    page = files("sam3_adapt.review_page").joinpath("page.html").read_text(encoding="utf-8")
    warm = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        host = (request.url.hostname or "").strip("[]")
        if loopback and host not in LOOPBACK:
            return JSONResponse({"error": f"host {host!r} refused: this server answers on 127.0.0.1"}, 403)
        if token is not None:
            given = (
                request.query_params.get("token")
                or request.headers.get("x-review-token")
                or request.cookies.get("review_token")
                or ""
            )
            if not secrets.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"error": "a token is required: open the URL the server printed"}, 403)
        response = await call_next(request)
        if token is not None:
            response.set_cookie("review_token", token, httponly=True, samesite="strict")
        return response

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/state")
    def state(after: int = -1) -> dict[str, Any]:
        ready = session.prompter is not None
        return {"index": session.next_index(after), "progress": session.progress(), "model_ready": ready}

    @app.get("/api/pair/{index}")
    def pair(index: int) -> Any:
        try:
            shown = session.pair(index)
        except ReviewError as error:
            return JSONResponse({"error": str(error)}, 404)
        warm.submit(_prepare, session, session.files.images[shown["file_name"]])
        return shown

    @app.post("/api/act")
    def act(action: Action) -> Any:
        try:
            done = session.act(
                action.index,
                action.action,
                action.version,
                instance=action.instance,
                box=action.box,
                fix=action.fix,
            )
        except JournalConflict as error:
            return JSONResponse({"error": str(error), "conflict": True}, 409)
        except ValueError as error:  # ReviewError, or a box outside the image
            return JSONResponse({"error": str(error)}, 400)
        shown = session.pair(done["index"]) if done["index"] is not None else None
        return {**done, "pair": shown, "progress": session.progress()}

    @app.get("/image/{name:path}")
    def image(name: str) -> Response:
        path = session.files.images.get(name)
        if path is None:
            return JSONResponse({"error": "not an image of this round"}, 404)
        return FileResponse(path)

    return app


def access(host: str, token: str | None) -> tuple[str | None, bool]:
    """The token a server on ``host`` requires (one is made for a non-loopback host), and whether it is local.

    Args:
        host: The address the server binds to.
        token: The token asked for, if any.

    Returns:
        ``(token, loopback)``.
    """
    local = host in LOOPBACK
    if not local and not token:
        token = secrets.token_urlsafe(18)
    return token, local


def _prepare(session: ReviewSession, path: Path) -> None:
    """Compute an image's vision features ahead of a box drawn on it (a prefetch; errors show later)."""
    if session.prompter is None:
        return
    with session.model_lock:
        try:
            session.prompter.prepare(path)
        except ValueError:
            pass  # an unreadable image is reported when a box is drawn on it


def load_prompter(session: ReviewSession) -> None:
    """Load the round's model (base + adapter of its proposals) and give the session its box prompter."""
    from sam3_adapt.inference.box_prompt import BoxPrompter
    from sam3_adapt.model.loading import load_segmenter

    settings = session.files.run["settings"]
    adapter = settings.get("adapter")
    if adapter is not None and not Path(adapter).exists() and (session.files.folder / "adapter").exists():
        adapter = str(session.files.folder / "adapter")
    segmenter = load_segmenter(settings["model"], adapter)
    session.prompter = BoxPrompter(segmenter, image_size=settings.get("image_size"))


def review(
    round_dir: str,
    host: str = "127.0.0.1",
    port: int = 8765,
    open: bool = False,  # noqa: A002 (the verb's --open)
    token: str | None = None,
    actor: str = "reviewer",
    pool: str | None = None,
    to_label_studio: str | None = None,
    from_label_studio: str | None = None,
) -> None:
    """Review an engine round in the browser: one key or one box drag per decision, each journalled.

    Args:
        round_dir: The round folder (``round-<r>`` of ``sam3-adapt engine``), with its review queue.
        host: Where to listen; anything but 127.0.0.1 / localhost needs a token (made when not given).
        port: The port.
        open: Open the page in the default browser.
        token: Token every request must carry (in the printed URL).
        actor: The reviewer's name, written on every decision.
        pool: The pool's image folder, if it moved since the proposals were made.
        to_label_studio: Write the queue as Label Studio tasks (proposals as brush predictions) to this
            file and stop.
        from_label_studio: Read a Label Studio export of those tasks into the journal as decisions and stop.
    """
    session = ReviewSession(read_round(round_dir, pool), actor)
    if to_label_studio or from_label_studio:
        from sam3_adapt.review_page.label_studio import from_label_studio as read_tasks
        from sam3_adapt.review_page.label_studio import to_label_studio as write_tasks

        if to_label_studio:
            print(f"wrote {write_tasks(session, to_label_studio)} task(s) to {to_label_studio}")
        if from_label_studio:
            print(f"journalled {read_tasks(session, from_label_studio)} decision(s) from {from_label_studio}")
        return
    import uvicorn

    token, local = access(host, token)
    threading.Thread(target=load_prompter, args=(session,), daemon=True).start()
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    print(f"review {len(session.files.queue)} pair(s) of {round_dir} at {url}", flush=True)
    if open:
        webbrowser.open(url)
    uvicorn.run(create_app(session, token, loopback=local), host=host, port=port, log_level="warning")
