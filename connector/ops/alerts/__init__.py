"""Alerts on run failures, failure streaks, recoveries and new critical flags, through an outbox with
retries."""

from connector.ops.alerts.channels import DeliveryError, send, verify_signature
from connector.ops.alerts.config import AlertSettings, load_alerts
from connector.ops.alerts.events import Alert, decide
from connector.ops.alerts.outbox import DeliveryStats, deliver_due, enqueue, notify_run, unsent

__all__ = ["Alert", "AlertSettings", "DeliveryError", "DeliveryStats", "decide", "deliver_due", "enqueue",
           "load_alerts", "notify_run", "send", "unsent", "verify_signature"]
