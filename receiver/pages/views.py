"""The pages: home, a streamer's dashboard, a viewer's own statistics, and the
confirmation steps for disconnecting and deleting a channel's data.

Each page identifies the caller with ``receiver/identity.py`` and is allowed or refused
by ``receiver/api/access.py``'s rules, exactly as the JSON API is; figures come from the
same reads (``receiver/reads``) in the same shapes, so a page shows what
``/api/channels/{id}/summary`` answers. Refusals render as HTML pages (``errors.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from markupsafe import Markup
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from receiver.api import access, params, ratelimit
from receiver.context import Context
from receiver.identity import Identity, end_login_session, identify
from receiver.pages import csrf
from receiver.pages.chart import hourly_svg
from receiver.pages.errors import error_page
from receiver.pages.render import page
from receiver.reads import discovery, queries
from receiver.reads.queries import ceil_hour, floor_hour
from receiver.reads.viewer_stats import viewer_channels
from schema.errors import InvalidParameter, NotFound, StreamfoldError
from schema.twitch.channels import disconnect_channel

MAX_FORM_BYTES = 4096
_CHANNEL = text(
    "SELECT broadcaster_id, login, display_name, connected FROM channels WHERE broadcaster_id = :b"
)


@dataclass(frozen=True, slots=True)
class Visit:
    """One page request: who asks (None: anonymous), in which transaction, and when."""

    request: Request
    ctx: Context
    session: AsyncSession
    who: Identity | None
    now: datetime

    def signed_in(self) -> Identity:
        return access.signed_in(self.who)

    @property
    def csrf_token(self) -> str:
        session_id = self.who.session_id if self.who else None
        return csrf.token_for(self.ctx.settings, session_id) if session_id else ""

    def render(self, template: str, status: int = 200, **context: Any) -> Response:
        return page(
            self.request, template, status, who=self.who, csrf_token=self.csrf_token, **context
        )

    async def form(self) -> dict[str, str]:
        """A urlencoded form whose CSRF token matches this browser session."""
        body = b""
        async for chunk in self.request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise InvalidParameter("body", "form too large")
        fields = dict(parse_qsl(body.decode(errors="replace")))
        csrf.check(self.ctx.settings, self.signed_in().session_id, fields.get(csrf.FIELD))
        return fields


PageHandler = Callable[[Visit], Awaitable[Response]]


def page_route(
    handler: PageHandler, *, public: bool = False
) -> Callable[[Request], Awaitable[Response]]:
    """``public``: a page anyone may open over the discovery reads, counted against the
    client's ``PUBLIC_RATE_LIMIT`` exactly as the public JSON routes are."""

    async def serve(request: Request) -> Response:
        ctx: Context = request.app.state.ctx
        try:
            if public:
                await ratelimit.check(ctx, request)
            async with ctx.sessions.begin() as session:
                who = await identify(session, ctx.settings, request)
                if who is not None and who.via != "session":
                    who = None  # pages are for browsers; API tokens are for the API
                return await handler(Visit(request, ctx, session, who, ctx.clock()))
        except StreamfoldError as exc:
            return error_page(request, exc.status_code, exc.detail, getattr(exc, "headers", None))

    serve.__name__ = handler.__name__
    return serve


# -- windows ------------------------------------------------------------------------------

PICKS = ("24h", "7d", "30d", "90d")


def _date(raw: str, name: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidParameter(name, "must be a date such as 2024-05-04") from None


def window_of(visit: Visit) -> tuple[params.Window, str, dict[str, str]]:
    """The window picker: ``window=24h|7d|30d|90d``, or custom ``from``/``to`` dates (UTC,
    both days included); parsed by the API's own ``parse_window``."""
    query = visit.request.query_params
    if "from" in query or "to" in query:
        start = _date(query.get("from", ""), "from")
        end = _date(query.get("to") or visit.now.date().isoformat(), "to") + timedelta(days=1)
        wanted = {"since": f"{start}T00:00:00Z", "until": f"{end}T00:00:00Z"}
        chosen = "custom"
    else:
        chosen = query.get("window", "7d")
        wanted = {"window": chosen}
    window = params.parse_window(params.Inputs(wanted, "", visit.now))
    return window, chosen, wanted


# -- pages --------------------------------------------------------------------------------


HOME_LIVE = 5


async def home(visit: Visit) -> Response:
    """What streamfold is, how to sign in, and the channels live now with most viewers."""
    top = await discovery.live_now(
        visit.session, game=None, language=None, limit=HOME_LIVE, after=None
    )
    return visit.render("home.html", live=top)


async def dashboard_for_me(visit: Visit) -> Response:
    who = visit.signed_in()
    target = f"/channels/{who.user_id}" if who.is_streamer else "/me"
    return RedirectResponse(target, status_code=303)


async def _channel(visit: Visit, rule: access.Rule) -> tuple[Identity, Any]:
    broadcaster_id = params.broadcaster_id(visit.request.path_params["broadcaster_id"])
    who = access.authorize(rule, visit.signed_in(), broadcaster_id)
    row = (await visit.session.execute(_CHANNEL, {"b": broadcaster_id})).first()
    if row is None:
        raise NotFound(f"no channel {broadcaster_id}")
    return who, row


async def dashboard(visit: Visit) -> Response:
    who, channel = await _channel(visit, access.CHANNEL_READER)
    window, chosen, wanted = window_of(visit)
    b, s = channel.broadcaster_id, visit.session
    total = await queries.summary(s, b, window.since, window.until, now=visit.now)
    hours = await queries.hourly(s, b, window.since, window.until, now=visit.now)
    sessions = await queries.sessions(
        s, b, window.since, window.until, now=visit.now, limit=params.MAX_LIMIT
    )
    csv_query = "&".join(f"{k}={v}" for k, v in wanted.items())
    return visit.render(
        "dashboard.html",
        channel=channel,
        owner=who.user_id == b and who.is_streamer,
        window=window,
        chosen=chosen,
        picks=PICKS,
        custom_from=visit.request.query_params.get("from", ""),
        custom_to=visit.request.query_params.get("to", ""),
        summary=total,
        hours=hours,
        chart=Markup(hourly_svg(hours)),  # noqa: S704 - built from numbers, text escaped
        sessions=sessions,
        csv_query=csv_query,
    )


async def viewer(visit: Visit) -> Response:
    who = visit.signed_in()
    window, chosen, _ = window_of(visit)
    since = floor_hour(window.since)
    until = since if window.empty else ceil_hour(window.until)
    read = await viewer_channels(visit.session, who.user_id, since, until, unit="day")
    channels = [
        {
            "broadcaster_id": c.broadcaster_id,
            "name": c.display_name or c.login or c.broadcaster_id,
            "chat_messages": c.chat_messages,
            "active_hours": c.active_hours,
            "periods": c.periods,
        }
        for c in read
    ]
    return visit.render(
        "viewer.html",
        channels=channels,
        total=sum(c["chat_messages"] for c in channels),
        window=params.Window(since, until),
        chosen=chosen,
        picks=PICKS,
        custom_from=visit.request.query_params.get("from", ""),
        custom_to=visit.request.query_params.get("to", ""),
    )


ACTIONS = {
    "disconnect": (
        "Disconnect this channel?",
        "streamfold stops receiving its events and forgets its Twitch tokens. Sessions and"
        " hourly figures stay; you can connect again at any time.",
        False,
    ),
    "delete": (
        "Delete all of this channel's data?",
        "This disconnects the channel and deletes every session, hourly row and chat"
        " record streamfold keeps for it. It cannot be undone.",
        True,
    ),
}


async def confirm(visit: Visit) -> Response:
    """The step between the dashboard's button and the change: GET asks, POST does."""
    _, channel = await _channel(visit, access.CHANNEL_OWNER)
    action = visit.request.path_params["action"]
    if action not in ACTIONS:
        raise NotFound(f"no action {action}")
    title, detail, purge = ACTIONS[action]
    if visit.request.method == "GET":
        return visit.render(
            "confirm.html", channel=channel, action=action, title=title, detail=detail
        )
    fields = await visit.form()
    if fields.get("confirm") != "yes":
        raise InvalidParameter("confirm", "tick the box to confirm")
    twitch = visit.ctx.twitch
    if twitch is None:
        raise StreamfoldError("the Twitch client is not configured; retry later")
    await disconnect_channel(visit.session, twitch, channel.broadcaster_id, purge=purge)
    done = "deleted" if purge else "disconnected"
    return RedirectResponse(f"/channels/{channel.broadcaster_id}?done={done}", status_code=303)


async def sign_out(visit: Visit) -> Response:
    await visit.form()
    response = RedirectResponse("/", status_code=303)
    await end_login_session(visit.session, visit.ctx.settings, visit.request, response)
    return response
