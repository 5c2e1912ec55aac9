"""FastAPI dependencies: the per-app settings (the project's `ltr_core.settings.Settings`; the
routes read its `serving` group) and state, injected into the routers.

They are `async def` although they do not await: FastAPI runs a plain `def` dependency in a
worker thread, and three thread hops per request cost more than ranking 100 candidates.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from ltr_core.settings import Settings
from ltr_serving.metrics import ServingMetrics
from ltr_serving.state import ServingState


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_state(request: Request) -> ServingState:
    state: ServingState | None = getattr(request.app.state, "serving", None)
    if state is None:  # only between process start and the end of the lifespan's startup
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the service is starting")
    return state


async def get_metrics(request: Request) -> ServingMetrics:
    metrics: ServingMetrics = request.app.state.metrics
    return metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
StateDep = Annotated[ServingState, Depends(get_state)]
MetricsDep = Annotated[ServingMetrics, Depends(get_metrics)]
