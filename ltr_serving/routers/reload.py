"""POST /reload (and the old platform's POST /api/debug/reload_weights): reload now.

Auth: `Authorization: Bearer $LTR_RELOAD_TOKEN`, compared in constant time.
- LTR_RELOAD_TOKEN unset or empty: reload over HTTP is disabled, every call gets 403
  (the poller still picks up new versions).
- header missing, not "Bearer <token>": 401 with `WWW-Authenticate: Bearer`.
- wrong token: 403.
Outcome: 200 {"reloaded": true, ...} when the artifact `latest` points at was validated and
swapped in; 409 {"reloaded": false, "error": ...} when it was refused (the request was fine, the
artifact is not: retrying the same call will not help); 503 when the store could not be read just
now (S3 or disk I/O, a read that outlived LTR_RELOAD_TIMEOUT_SECONDS, or another reload still
holding the slot after that long: retry later). In every failure the old version keeps serving.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Header, HTTPException, Request, Security, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer

from ltr_core.settings import ServingSettings, bearer_accepted
from ltr_serving.dependencies import SettingsDep, StateDep
from ltr_serving.models import ErrorResponse, ReloadResponse

router = APIRouter(tags=["operations"])
log = logging.getLogger("ltr_serving.reload")

LEGACY_RELOAD_PATH = "/api/debug/reload_weights"
# Declares the bearer scheme in OpenAPI; never refuses by itself (`check_token` does).
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="reloadToken",
    description="Authorization: Bearer $LTR_RELOAD_TOKEN",
)


def check_token(settings: ServingSettings, authorization: str | None, client: str) -> None:
    """Raises the 401/403 described above. Logs refusals with the caller, never a token."""
    if not settings.reload_enabled:
        log.warning("reload refused: disabled", extra={"client": client})
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "reload over HTTP is disabled: LTR_RELOAD_TOKEN is not set on the server",
        )
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        log.warning("reload refused: no bearer token", extra={"client": client})
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or malformed Authorization header; expected 'Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not bearer_accepted(settings.reload_token, token):
        log.warning("reload refused: wrong token", extra={"client": client})
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid reload token")


@router.post(
    "/reload",
    response_model=ReloadResponse,
    responses={
        401: {"model": ErrorResponse, "description": "no bearer token"},
        403: {
            "model": ErrorResponse,
            "description": "wrong token, or reload over HTTP disabled (no LTR_RELOAD_TOKEN)",
        },
        409: {"model": ReloadResponse, "description": "artifact refused; old serves"},
        503: {"model": ReloadResponse, "description": "store unreadable or busy; retry later"},
    },
    dependencies=[Security(bearer)],
)
@router.post(LEGACY_RELOAD_PATH, response_model=ReloadResponse, include_in_schema=False)
def reload(
    request: Request,
    settings: SettingsDep,
    state: StateDep,
    authorization: str | None = Header(default=None, include_in_schema=False),
) -> ReloadResponse | JSONResponse:
    """Sync on purpose: FastAPI runs it in a worker thread, so reading and validating the
    artifact never blocks the event loop that serves /rank."""
    check_token(settings.serving, authorization, request.client.host if request.client else "?")
    attempt = state.reload("api")
    canary = state.candidate_status
    outcome = ReloadResponse(
        reloaded=attempt.ok,
        version=attempt.version,
        previous_version=attempt.previous_version,
        error=attempt.error,
        candidate_state=canary.state,
        candidate_version=canary.version,
        candidate_error=canary.error,
    )
    if attempt.ok:
        return outcome
    # 503: the store could not be read now (retry later); 409: the artifact itself was refused.
    code = status.HTTP_503_SERVICE_UNAVAILABLE if attempt.retryable else status.HTTP_409_CONFLICT
    return JSONResponse(outcome.model_dump(), status_code=code)
