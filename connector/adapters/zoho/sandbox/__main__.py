"""`python -m connector.adapters.zoho.sandbox [--port P] [--seed N] ...` runs `serve`."""

from __future__ import annotations

import argparse

from connector.adapters.zoho.sandbox.server import serve


def main() -> None:
    """Parse flags and serve until interrupted."""
    parser = argparse.ArgumentParser(description="Zoho CRM v8 sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--token-ttl", type=int, default=3600)
    parser.add_argument("--daily-credits", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--clock-offset", type=float, default=0.0,
                        help="seconds the org's clock runs ahead of this machine's (negative: behind)")
    a = parser.parse_args()
    serve(a.host, a.port, a.seed, a.latency_ms, a.fail_rate, a.token_ttl, a.daily_credits, a.concurrency,
          a.clock_offset)


if __name__ == "__main__":
    main()
