"""The outbound safety gate: the one decision every SMS and email passes.

``gate_decide`` is a pure function of the facts about one message; it returns
the reason to block it, or "" to let it go. ``messaging.services.messages_send``
gathers the facts, records the decision as an OutboundMessage, and only then
calls a backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from messaging.models import BlockReason, Channel, MessageKind
from messaging.quiet_hours import Window
from tenants.models import OutboundMode

# Proactive messages: count toward the daily cap and stop when the lead is closed.
PROACTIVE_KINDS = frozenset(
    {MessageKind.CADENCE, MessageKind.REMINDER, MessageKind.REBOOKING}
)
# Answers the law expects at once (the STOP confirmation, the HELP reply): no quiet hours, no cap.
IMMEDIATE_KINDS = frozenset({MessageKind.SYSTEM})


@dataclass(frozen=True)
class GateFacts:
    mode: str
    channel: str
    kind: str
    address: str
    lead_email: str
    whitelist: frozenset[str]
    provider_configured: bool
    opted_out: bool
    lead_open: bool
    window: Window | None
    now: datetime
    sent_last_24h: int
    daily_cap: int
    allow_opted_out: bool = False


def gate_decide(facts: GateFacts) -> str:
    """Why this message must not go out, or "" when it may. The first rule that refuses wins."""
    if not facts.provider_configured:
        return BlockReason.PROVIDER_NOT_CONFIGURED
    if facts.mode not in (OutboundMode.WHITELIST, OutboundMode.LIVE):
        return BlockReason.MODE_DISABLED
    if facts.mode == OutboundMode.WHITELIST:
        if not facts.whitelist:
            return BlockReason.WHITELIST_EMPTY
        # The rule is the lead's email, for SMS too: a lead whose email is not listed gets nothing.
        if not facts.lead_email or facts.lead_email.lower() not in facts.whitelist:
            return BlockReason.NOT_WHITELISTED
    if not facts.address:
        return BlockReason.NO_ADDRESS
    if facts.opted_out and not (facts.allow_opted_out and facts.channel == Channel.SMS):
        return BlockReason.OPTED_OUT
    if facts.kind in PROACTIVE_KINDS and not facts.lead_open:
        return BlockReason.LEAD_CLOSED
    outside_window = facts.window is None or not facts.window.allows(facts.now)
    if facts.kind not in IMMEDIATE_KINDS and outside_window:
        return BlockReason.QUIET_HOURS
    if facts.kind in PROACTIVE_KINDS and facts.sent_last_24h >= facts.daily_cap:
        return BlockReason.DAILY_CAP
    return ""
