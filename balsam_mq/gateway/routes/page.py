"""The gateway's status page: ``GET /`` (the dashboard, or a login form without a valid token),
``POST /login`` and ``/logout`` for its cookie, its static files, and ``GET /page/sessions``
(the launcher sessions it shows).

The page is a template and a script: the script reads the JSON endpoints every client uses
(``/sites``, ``/jobs/count``, ``/events``, ``/batch_jobs``) and follows ``/events/stream``.
The browser holds the token in the ``balsam_token`` cookie: HttpOnly (no script reads it),
SameSite=Strict (no other site's page sends it), Secure over https.

Example::

    $ balsam-mq user token alice      # then open http://gateway:8000/ and paste the token
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel

from balsam_mq.domain import JobState, utcnow
from balsam_mq.errors import AuthError, NotFound
from balsam_mq.gateway.auth import Caller, bearer
from balsam_mq.gateway.deps import Mine, Svc
from balsam_mq.store.schema import SESSIONS

router = APIRouter()


COOKIE = "balsam_token"  # the cookie ``auth.bearer`` reads
COOKIE_MAX_AGE_S = 30 * 24 * 3600  # a token without an expiry is remembered this long
MAX_LOGIN_BYTES = 16 * 1024
HERE = Path(__file__).resolve().parent.parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
MEDIA_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# the page's own files only: no inline script or style, no other origin
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# column headings of the counts table, one per state (in the order of JobState)
SHORT: dict[JobState, str] = {
    JobState.CREATED: "created",
    JobState.AWAITING_PARENTS: "awaiting",
    JobState.READY: "ready",
    JobState.STAGED_IN: "staged in",
    JobState.PREPROCESSED: "preproc.",
    JobState.RUNNING: "running",
    JobState.RUN_DONE: "run done",
    JobState.RUN_ERROR: "run error",
    JobState.RUN_TIMEOUT: "timeout",
    JobState.RESTART_READY: "restart",
    JobState.POSTPROCESSED: "postproc.",
    JobState.STAGED_OUT: "staged out",
    JobState.JOB_FINISHED: "finished",
    JobState.FAILED: "failed",
}


@cache
def templates() -> Jinja2Templates:
    return Jinja2Templates(directory=TEMPLATES)


def _html(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    return templates().TemplateResponse(
        request, name, context, status_code=status_code, headers=SECURITY_HEADERS
    )


def _login_form(request: Request, problem: str = "", status_code: int = 200) -> HTMLResponse:
    return _html(request, "login.html", {"problem": problem}, status_code)


def _home(request: Request) -> str:
    """The page's path (the app may be mounted below a prefix)."""
    return request.url_for("status_page").path


def _forget(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE, path="/", secure=_https(request), httponly=True, samesite="strict"
    )


def _https(request: Request) -> bool:
    return request.url.scheme == "https"


@router.get("/", name="status_page", response_class=HTMLResponse, include_in_schema=False)
async def page(request: Request, svc: Svc) -> Response:
    """The status page of the caller's sites; a login form without a valid token."""
    try:
        token = bearer(request)
    except AuthError:
        return _login_form(request)
    try:
        who = await svc.auth.caller(token)
    except AuthError as exc:
        response = _login_form(request, f"The saved token was refused: {exc}")
        _forget(response, request)
        return response
    context = {
        "user": who.user,
        "expires": _expiry_text(who),
        "states": [(s.value, SHORT.get(s, s.value.lower())) for s in JobState],
    }
    return _html(request, "status.html", context)


def _expiry_text(who: Caller) -> str:
    if who.expires_at is None:
        return ""
    return f"{who.expires_at:%Y-%m-%d %H:%M} UTC"


@router.post("/login", include_in_schema=False)
async def login(request: Request, svc: Svc) -> Response:
    """Check the pasted token; if good, keep it in the cookie and go to the page."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        return _login_form(request, "A login from another site was refused.", 403)
    body = await request.body()
    if len(body) > MAX_LOGIN_BYTES:
        return _login_form(request, "That is not a token: it is far too long.", 413)
    form = parse_qs(body.decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    if not token:
        return _login_form(request, "Paste a token first.", 401)
    try:
        who = await svc.auth.caller(token)
    except AuthError as exc:
        return _login_form(request, f"The token was refused: {exc}", 401)
    response = RedirectResponse(_home(request), status_code=303)
    max_age = COOKIE_MAX_AGE_S
    if who.expires_at is not None:
        max_age = max(1, min(max_age, int((who.expires_at - utcnow()).total_seconds())))
    response.set_cookie(
        COOKIE,
        token,
        max_age=max_age,
        path="/",
        secure=_https(request),
        httponly=True,
        samesite="strict",
    )
    return response


@router.get("/login", include_in_schema=False)
async def login_page(request: Request) -> Response:
    """The form is the page itself when there is no valid token."""
    return RedirectResponse(_home(request), status_code=303)


@router.api_route("/logout", methods=["GET", "POST"], include_in_schema=False)
async def logout(request: Request) -> Response:
    """Forget the cookie and go back to the login form."""
    response = RedirectResponse(_home(request), status_code=303)
    _forget(response, request)
    return response


@router.get("/static/{name}", include_in_schema=False)
async def static(name: str) -> Response:
    """One of the page's files (scripts, style, icon); nothing outside ``static/``."""
    media_type = MEDIA_TYPES.get(Path(name).suffix)
    path = STATIC / name
    if media_type is None or path.name != name or not path.is_file():
        raise NotFound(f"no static file {name!r}")
    return FileResponse(
        path,
        media_type=media_type,
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


class SessionRow(BaseModel):
    """A launcher session as the status page shows it."""

    id: int
    site_id: int
    batch_job_id: int | None = None
    hostname: str = ""
    pid: int = 0
    state: str = "RUNNING"  # RUNNING, STOPPED, or LOST (taken for dead: see stop_reason)
    heartbeat: datetime | None = None
    created_at: datetime | None = None
    ended_at: datetime | None = None
    stop_reason: str | None = None
    running: int | None = None  # jobs running at the last heartbeat
    nodes: int = 0
    cores: int = 0
    job_mode: str | None = None
    wall_time_min: float | None = None

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> SessionRow:
        nodes = [n for n in doc.get("nodes") or [] if isinstance(n, dict)]
        fields = {k: doc[k] for k in _STORED if k in doc and k != "nodes"}
        cores = sum(int(n.get("cores", 0)) for n in nodes)
        return cls(id=doc["_id"], nodes=len(nodes), cores=cores, **fields)


# what a session row reads of the stored session (``nodes`` is stored as the node list)
_STORED = {name: 1 for name in SessionRow.model_fields if name not in ("id", "cores")}


class SessionsPage(BaseModel):
    now: datetime  # the gateway's clock, to age heartbeats by
    items: list[SessionRow]


@router.get("/page/sessions", summary="Launcher sessions of the caller's sites, newest first")
async def sessions(
    svc: Svc,
    mine: Mine,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    id: Annotated[int | None, Query(ge=1, description="only this session")] = None,
) -> SessionsPage:
    """What the status page shows of each launcher session (or of session ``id`` alone:
    where a job ran), with the gateway's clock (``now``) to age heartbeats by::

        GET /page/sessions?limit=20
        {"now": "...", "items": [{"id": 7, "site_id": 1, "state": "RUNNING",
          "hostname": "nid0001", "nodes": 2, "running": 5, "heartbeat": "...", ...}]}
    """
    site_ids = await mine.site_ids()
    match: dict[str, Any] = {"site_id": {"$in": site_ids}}
    if id is not None:
        match["_id"] = id
    cursor = svc.store.db[SESSIONS].find(match, _STORED).sort("_id", -1).limit(limit)
    items = [SessionRow.from_doc(doc) async for doc in cursor]
    return SessionsPage(now=utcnow(), items=items)
