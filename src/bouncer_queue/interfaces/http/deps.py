"""Annotated dependency aliases for the routes: the QueueManager, the settings, and a token per scope."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from bouncer_queue.access import Scope
from bouncer_queue.config import Settings
from bouncer_queue.interfaces.http.auth import authenticate, require_scope
from bouncer_queue.service import QueueManager
from bouncer_queue.storage.records import ApiToken


def get_manager(request: Request) -> QueueManager:
    manager: QueueManager = request.app.state.manager
    return manager


def get_settings(request: Request) -> Settings:
    return get_manager(request).settings


ManagerDep = Annotated[QueueManager, Depends(get_manager)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def _scoped(scope: Scope) -> object:
    async def dependency(request: Request, manager: ManagerDep) -> ApiToken:
        return require_scope(await authenticate(manager, request), scope)

    return Depends(dependency)


ReadToken = Annotated[ApiToken, _scoped(Scope.READ)]
SubmitToken = Annotated[ApiToken, _scoped(Scope.SUBMIT)]
AdminToken = Annotated[ApiToken, _scoped(Scope.ADMIN)]
