"""`/healthz` (the process answers) and `/readyz` (the database answers and its schema is at head)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy.exc import SQLAlchemyError

from connector.api.models import Health
from connector.api.problems import Problem
from connector.api.services import Services, services
from connector.db.engine import current_revision, head_revision, shown_url

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, response_model_exclude_none=True)
def healthz() -> Health:
    """The process is up (no database call)."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"description": "Not ready (problem)."}})
def readyz(svc: Annotated[Services, Depends(services)]) -> Health:
    """Ready to serve: the database answers and its migrations are current (alembic head)."""
    where = shown_url(str(svc.engine.url))
    try:
        revision = current_revision(svc.engine)
    except SQLAlchemyError as exc:
        raise Problem("not-ready", f"the database does not answer: {type(exc).__name__}",
                      database=where) from None
    head = head_revision()
    if revision != head:
        raise Problem("not-ready", f"the database schema is at {revision or 'nothing (no tables)'}, not "
                      f"{head}; run `prepaid-sync db upgrade`", database=where, revision=revision, head=head)
    return Health(status="ready", database=where, revision=revision, head=head)
