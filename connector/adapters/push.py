"""The vendor-neutral side of CRM push: a channel the CRM calls when records change.

A CRM that can push (Zoho's Notifications API) gives a `PushSource` through `CrmAdapter.push_source`;
one that cannot (Fxiaoke) gives None and stays on polling. The push package (`connector.push`) keeps
the channel's state and turns the CRM's calls into debounced incremental runs; it sees only these types.
"""

from __future__ import annotations

import abc
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict


class Subscription(BaseModel):
    """A channel as the CRM holds it: its id, when it lapses, and the modules/objects it watches."""

    model_config = ConfigDict(frozen=True)

    channel_id: str
    expires_at: datetime
    resources: tuple[str, ...] = ()


class Notice(BaseModel):
    """One call of the CRM to our receiver: which channel (and its token), which records, what happened."""

    model_config = ConfigDict(frozen=True)

    channel_id: str
    token: str | None
    resource: str
    operation: str
    ids: tuple[str, ...] = ()


class PushSource(abc.ABC):
    """Subscribe, renew and drop a change-notification channel at one CRM."""

    max_lifetime: timedelta
    """The longest life the CRM grants a channel; it is renewed well before it lapses."""

    @abc.abstractmethod
    def subscribe(self, channel_id: str, url: str, token: str, expires_at: datetime) -> Subscription:
        """Register (or re-register) the channel to call `url` with `token`, until `expires_at`."""

    @abc.abstractmethod
    def renew(self, channel_id: str, url: str, expires_at: datetime) -> Subscription | None:
        """Move the channel's lapse to `expires_at`, keeping its token; None when the CRM has lost it."""

    @abc.abstractmethod
    def unsubscribe(self, channel_id: str) -> None:
        """Drop the channel (nothing happens when the CRM does not know it)."""

    @abc.abstractmethod
    def details(self, channel_id: str) -> Subscription | None:
        """The channel as the CRM holds it now, or None."""
