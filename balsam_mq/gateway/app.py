"""The gateway's FastAPI application: services opened for its lifetime, a relay beside
them, the caller of every request, and errors answered as JSON naming the problem.

Example::

    uvicorn.run(create_app(load_settings()), host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from bson.errors import BSONError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pymongo.errors import PyMongoError, WriteError
from starlette.exceptions import HTTPException

from balsam_mq import errors
from balsam_mq.broker import build_topology, open_amqp
from balsam_mq.domain.wire import jsonable
from balsam_mq.errors import BalsamError, brief
from balsam_mq.gateway.auth import Authenticator
from balsam_mq.gateway.deps import Services
from balsam_mq.gateway.limits import BodyLimit
from balsam_mq.gateway.routes import dead, page, resources, status, stream, writes
from balsam_mq.gateway.streams import StreamHub
from balsam_mq.relay import Relay
from balsam_mq.sdk.direct import DirectBackend
from balsam_mq.settings import Settings
from balsam_mq.store import open_store

log = logging.getLogger(__name__)

# the HTTP status of each error a request may cause (the first matching class wins)
STATUS: tuple[tuple[type[BalsamError], int], ...] = (
    (errors.AuthError, 401),
    (errors.NotFound, 404),
    (errors.InUse, 409),
    (errors.MultipleResults, 409),
    (errors.InvalidTransition, 409),
    (errors.Unavailable, 503),
    (errors.BrokerError, 503),
    (errors.StoreError, 422),  # a write the store refused (a duplicate, a bad document)
    (errors.ConfigError, 400),
    (BalsamError, 422),
)


class Problem(BaseModel):
    field: str
    reason: str


class ErrorBody(BaseModel):
    """The answer to every request that fails: the error's name and what was wrong, naming
    the object and the field (and, for a request that failed validation, each field's)."""

    error: str
    detail: str
    problems: list[Problem] | None = None


# the error answers documented on every route but /healthz and /whoami (413: ``limits``)
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in sorted({c for _, c in STATUS} | {413})
}


def status_of(exc: BalsamError) -> int:
    return next(code for kind, code in STATUS if isinstance(exc, kind))


def create_app(settings: Settings, *, relay: bool = True) -> FastAPI:
    """The gateway on the services ``settings`` name; with ``relay``, it also publishes
    the event log to RabbitMQ (any number of relays may run: one holds the lease)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            open_store(settings.mongodb_url, settings.db) as store,
            open_amqp(settings.amqp_url) as amqp,
            anyio.create_task_group() as tg,
        ):
            topology = build_topology(settings.namespace, quorum=settings.quorum)
            backend = DirectBackend(store, amqp, topology)
            hub = StreamHub(backend)
            app.state.services = Services(store, amqp, topology, backend, Authenticator(store), hub)
            if relay:
                tg.start_soon(Relay(store, amqp, topology).run_forever)
            tg.start_soon(hub.run)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()
                await hub.aclose()
                await backend.aclose()

    app = FastAPI(
        title="balsam_mq gateway",
        version="1",
        description="Sites, apps, jobs, batch jobs and events of the caller, and their live "
        "event stream. Every endpoint but /healthz needs `Authorization: Bearer <token>`.",
        lifespan=lifespan,
    )

    @app.exception_handler(BalsamError)
    async def balsam_error(request: Request, exc: BalsamError) -> JSONResponse:
        return JSONResponse(
            {"error": type(exc).__name__, "detail": str(exc)}, status_code=status_of(exc)
        )

    @app.exception_handler(PyMongoError)
    async def store_error(request: Request, exc: PyMongoError) -> JSONResponse:
        log.warning("MongoDB failed a request to %s: %s", request.url.path, brief(exc))
        return JSONResponse(
            {"error": "Unavailable", "detail": f"MongoDB failed: {brief(exc)}"}, status_code=503
        )

    @app.exception_handler(BSONError)
    @app.exception_handler(OverflowError)
    @app.exception_handler(WriteError)
    async def unstorable(request: Request, exc: Exception) -> JSONResponse:
        # a value BSON cannot hold (an integer over 8 bytes, a NUL in a key) or a write
        # MongoDB refuses for what it holds (a duplicate, a field inside a string): the
        # request's fault, found only when the driver encodes it or the server applies it
        return JSONResponse(
            {"error": "StoreError", "detail": f"MongoDB refused a value: {brief(exc)}"},
            status_code=422,
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        # starlette's own refusals (a body that is not JSON, no such path or method)
        return JSONResponse(
            {"error": "HTTPError", "detail": str(exc.detail)},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "(body)"
            problems.append({"field": where, "reason": err.get("msg", "")})
        detail = "; ".join(f"{p['field']}: {p['reason']}" for p in problems)
        return JSONResponse(
            {"error": "ValidationError", "detail": detail, "problems": jsonable(problems)},
            status_code=422,
        )

    app.include_router(stream.router, responses=ERRORS)
    app.include_router(writes.router, responses=ERRORS)
    app.include_router(dead.router, responses=ERRORS)
    app.include_router(status.router)
    # the status page: /, /login, /logout, /static, /page
    app.include_router(page.router, responses=ERRORS)
    app.include_router(resources.router, responses=ERRORS)  # last: /{kind} would take others
    app.add_middleware(BodyLimit)
    return app
