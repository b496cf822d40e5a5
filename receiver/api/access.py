"""Who may do what, decided here and nowhere else.

Every API operation declares one ``Rule`` in the route table (``receiver/api/routes.py``);
the one endpoint wrapper there calls ``authorize`` before any handler runs, so no handler
checks access by hand:

- anonymous (no valid session cookie or API token): 401;
- ``SIGNED_IN``: anyone signed in (viewers, streamers, operators): their own things;
- ``CHANNEL_READER``: the streamer of that channel, or an operator (``OPERATOR_USER_IDS``);
- ``CHANNEL_OWNER``: the streamer of that channel only, from a browser session
  (disconnect, purge: a leaked API token must not be able to delete a channel's data);
- ``browser_only``: a signed-in browser session, not an API token (a leaked token must
  not be able to mint or revoke tokens).

Unsafe methods authenticated by the session cookie must come from our own origin or an
allowed CORS origin: ``SameSite=Lax`` already keeps cross-site forms out, this also
covers sibling subdomains that count as the same site.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

from receiver.identity import Identity
from schema.errors import Forbidden, NotAuthenticated
from schema.settings import Settings

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Audience(Enum):
    SIGNED_IN = "signed_in"
    CHANNEL_READER = "channel_reader"
    CHANNEL_OWNER = "channel_owner"
    PUBLIC = "public"  # anyone, signed in or not; rate-limited per client address


@dataclass(frozen=True, slots=True)
class Rule:
    audience: Audience
    browser_only: bool = False

    def describe(self) -> str:
        """For the OpenAPI document: who may call an operation."""
        who = {
            Audience.SIGNED_IN: "Anyone signed in; it concerns only the caller's own data.",
            Audience.CHANNEL_READER: "The channel's streamer, or an operator.",
            Audience.CHANNEL_OWNER: "The channel's streamer only.",
            Audience.PUBLIC: "Anyone, no sign-in; PUBLIC_RATE_LIMIT requests a minute per "
            "client address (429 with Retry-After beyond).",
        }[self.audience]
        return who + (" Browser session only (not an API token)." if self.browser_only else "")


SIGNED_IN = Rule(Audience.SIGNED_IN)
CHANNEL_READER = Rule(Audience.CHANNEL_READER)
CHANNEL_OWNER = Rule(Audience.CHANNEL_OWNER, browser_only=True)
BROWSER_SESSION = Rule(Audience.SIGNED_IN, browser_only=True)
PUBLIC = Rule(Audience.PUBLIC)
# Who a public route's caller is when not signed in: may read no channel's private figures.
ANONYMOUS = Identity("", "", is_streamer=False, is_operator=False, via="anonymous")


def signed_in(who: Identity | None) -> Identity:
    """Anonymous callers stop here, before anything else about the request is judged."""
    if who is None:
        raise NotAuthenticated("sign in with Twitch or send Authorization: Bearer sfk_...")
    return who


def authorize(rule: Rule, who: Identity, broadcaster_id: str | None) -> Identity:
    """The identity, if it may perform an operation under ``rule`` on ``broadcaster_id``
    (the path's channel, when the operation has one); else Forbidden."""
    if rule.browser_only and who.via != "session":
        raise Forbidden("this operation needs a signed-in browser session, not an API token")
    if rule.audience is Audience.SIGNED_IN:
        return who
    if broadcaster_id is None:  # a table entry without {broadcaster_id}: a programming error
        raise Forbidden("no channel named in the path")
    if rule.audience is Audience.CHANNEL_READER and who.may_read_channel(broadcaster_id):
        return who
    if (
        rule.audience is Audience.CHANNEL_OWNER
        and who.is_streamer
        and who.user_id == broadcaster_id
    ):
        return who
    raise Forbidden(f"you may not access channel {broadcaster_id}")


def allowed_origins(settings: Settings) -> frozenset[str]:
    own = urlsplit(settings.public_base_url or "")
    origins = set(settings.cors_origins)
    if own.scheme and own.netloc:
        origins.add(f"{own.scheme}://{own.netloc}")
    return frozenset(origins)


def check_origin(settings: Settings, method: str, who: Identity, origin: str | None) -> None:
    """Refuse a cookie-authenticated unsafe request sent from a foreign origin."""
    if method in SAFE_METHODS or who.via != "session" or origin is None:
        return
    if origin not in allowed_origins(settings):
        raise Forbidden(f"requests from origin {origin} may not change anything")
