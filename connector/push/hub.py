"""What a receiver needs: check a CRM call against the connection's channel, then start its debounced run.

The HTTP route (`connector.api.hooks`) parses the CRM's body into a `Notice` and calls `receive`; the run
itself is whatever `run(connection)` the wiring gives (`connector.app.push_runner`: an incremental sync
under the connection's run lock and API budget, returning `debounce.LOCKED` when the lock is held).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import Engine

from connector.adapters.push import Notice
from connector.push.channels import Channels
from connector.push.debounce import Debouncer

log = logging.getLogger(__name__)


class PushHub:
    """Verifies notices and turns bursts of them into one run per connection."""

    def __init__(self, engine: Engine, run: Callable[[str], str], *, channels: Channels | None = None,
                 debouncer: Debouncer | None = None, quiet: float = 0.5, max_delay: float = 3.0) -> None:
        self.engine = engine
        self.channels = channels or Channels(engine)
        self.debouncer = debouncer or Debouncer(run, quiet=quiet, max_delay=max_delay)
        self._closing = threading.Event()
        self._renewer: threading.Thread | None = None

    def receive(self, connection: str, notice: Notice) -> bool:
        """True (and a run is on its way) when the notice names the connection's channel and token."""
        ok = self.channels.verify(connection, notice.channel_id, notice.token)
        if ok:
            self.debouncer.start()
            self.debouncer.notify(connection)
        else:
            log.warning("refused a notice for %s: channel or token does not match", connection)
        self.channels.count(connection, ok)
        return ok

    def keep_renewing(self, renew: Callable[[], object], every: float = 60.0) -> None:
        """Call `renew` (renew the channels that are due) every `every` seconds from a daemon thread."""

        def loop() -> None:
            while not self._closing.wait(every):
                try:
                    renew()
                except Exception:  # noqa: BLE001 - the next round tries again
                    log.exception("push channel renewal failed")

        if self._renewer is None:
            self._renewer = threading.Thread(target=loop, name="push-renew", daemon=True)
            self._renewer.start()

    def close(self) -> None:
        """Stop renewing and the debouncer's loop (a run in progress finishes on its own)."""
        self._closing.set()
        self.debouncer.close()
        if self._renewer is not None:
            self._renewer.join(5)
            self._renewer = None
