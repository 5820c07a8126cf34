"""`prepaid-sync sandbox serve`: run a local emulator of a CRM's API."""

from __future__ import annotations

import importlib
from enum import StrEnum
from typing import Annotated

import typer

app = typer.Typer(rich_markup_mode=None, no_args_is_help=True,
                  help="Local CRM emulators for tests, demos and trying mappings safely.")


class Crm(StrEnum):
    """CRMs with a sandbox."""

    zoho = "zoho"
    fxiaoke = "fxiaoke"


@app.command("serve")
def serve(
    crm: Annotated[Crm, typer.Option("--crm", help="Which CRM to emulate.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).")] = 0,
    seed: Annotated[int, typer.Option(help="Create a deterministic org/tenant with N customers.")] = 0,
    latency_ms: Annotated[int, typer.Option("--latency-ms", help="Added latency per request.")] = 0,
    fail_rate: Annotated[float,
                         typer.Option("--fail-rate", help="Share of requests that fail transiently.")] = 0.0,
    token_ttl: Annotated[int | None,
                         typer.Option("--token-ttl", help="Access-token lifetime in seconds.")] = None,
    daily_credits: Annotated[int | None,
                             typer.Option("--daily-credits", help="Zoho: API credits per day.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Zoho: concurrent-call limit.")] = None,
    daily_quota: Annotated[int | None,
                           typer.Option("--daily-quota", help="Fxiaoke: calls per day.")] = None,
    rate_limit: Annotated[int | None,
                          typer.Option("--rate-limit", help="Fxiaoke: calls per path per 20 s.")] = 100,
    clock_offset: Annotated[float,
                            typer.Option(
                                "--clock-offset", help="Seconds the CRM's clock runs ahead of "
                                "this machine's (negative: behind): record times, the Date "
                                "header, token expiry.")] = 0.0,
) -> None:
    """Serve the sandbox; prints one JSON line with its URLs and credentials, logs to stderr."""
    module = importlib.import_module(f"connector.adapters.{crm.value}.sandbox")
    if crm is Crm.zoho:
        module.serve(host=host, port=port, seed=seed, latency_ms=latency_ms, fail_rate=fail_rate,
                     token_ttl=token_ttl or 3600, daily_credits=daily_credits, concurrency=concurrency,
                     clock_offset=clock_offset)
    else:
        module.serve(host=host, port=port, seed=seed, latency_ms=latency_ms, fail_rate=fail_rate,
                     token_ttl=token_ttl or 7200, daily_quota=daily_quota, rate_limit=rate_limit,
                     clock_offset=clock_offset)
