"""What a route depends on: the gateway's open services, the caller and the caller's scope."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from aio_pika.abc import AbstractRobustConnection
from fastapi import Depends, Request

from balsam_mq.broker import Topology
from balsam_mq.gateway.auth import Authenticator, Caller, bearer
from balsam_mq.gateway.scope import Scope
from balsam_mq.gateway.streams import StreamHub
from balsam_mq.sdk.direct import DirectBackend
from balsam_mq.store import Store


@dataclass
class Services:
    store: Store
    amqp: AbstractRobustConnection
    topology: Topology
    backend: DirectBackend
    auth: Authenticator
    streams: StreamHub


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


async def caller(request: Request, svc: Annotated[Services, Depends(services)]) -> Caller:
    return await svc.auth.caller(bearer(request))


async def scope(
    who: Annotated[Caller, Depends(caller)], svc: Annotated[Services, Depends(services)]
) -> Scope:
    return Scope(who.user, svc.store)


Svc = Annotated[Services, Depends(services)]
Who = Annotated[Caller, Depends(caller)]
Mine = Annotated[Scope, Depends(scope)]
