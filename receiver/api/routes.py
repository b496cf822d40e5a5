"""The route table of the JSON API: every operation, its access rule, parameters and shapes.

``api_routes()`` serves it and ``receiver/api/openapi.py`` documents it, both from
``OPERATIONS``; add an operation here and it is routed, guarded and documented.
"""

from __future__ import annotations

from starlette.routing import Route

from receiver.api import (
    access,
    channels,
    follows,
    hourly,
    me,
    public,
    sessions,
    shapes,
    summary,
    tokens,
    viewers,
)
from receiver.api import params as p
from receiver.api.endpoint import Operation, routes_of
from receiver.api.openapi import openapi_route
from receiver.reads import queries

CHANNEL = "/api/channels/{broadcaster_id}"
CHANNEL_ERRORS = (401, 403, 404, 422)
PUBLIC_ERRORS = (422, 429)

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "GET",
        "/api/me",
        me.whoami,
        access.SIGNED_IN,
        "Who am I: user, roles and the channels I may read",
        shapes.Me,
        errors=(401,),
    ),
    Operation(
        "GET",
        f"{CHANNEL}/sessions",
        sessions.list_sessions,
        access.CHANNEL_READER,
        "Stream sessions overlapping the window, newest first, cursor-paginated",
        shapes.SessionPage,
        queries=(p.WINDOW, p.LIMIT, p.CURSOR, p.FORMAT),
        csv=queries.Session,
        errors=CHANNEL_ERRORS,
    ),
    Operation(
        "GET",
        f"{CHANNEL}/hourly",
        hourly.list_hours,
        access.CHANNEL_READER,
        "Hourly rows (UTC) of the window that saw live time, chat or viewer samples",
        shapes.Hourly,
        queries=(p.WINDOW, p.FORMAT),
        csv=queries.HourRow,
        errors=CHANNEL_ERRORS,
    ),
    Operation(
        "GET",
        f"{CHANNEL}/summary",
        summary.channel_summary,
        access.CHANNEL_READER,
        "Totals over the window; unique_chatters is exact over the whole window",
        queries.Summary,
        queries=(p.WINDOW,),
        errors=CHANNEL_ERRORS,
    ),
    Operation(
        "DELETE",
        CHANNEL,
        channels.disconnect,
        access.CHANNEL_OWNER,
        "Disconnect my channel (subscriptions and tokens go); purge=true deletes its data",
        shapes.Disconnected,
        queries=(p.PURGE,),
        errors=CHANNEL_ERRORS,
    ),
    Operation(
        "GET",
        "/api/viewers/me/stats",
        viewers.my_stats,
        access.SIGNED_IN,
        "My own chat statistics per channel and UTC hour or day",
        shapes.ViewerStats,
        queries=(p.WINDOW, p.GRANULARITY),
        errors=(401, 422),
    ),
    Operation(
        "GET",
        "/api/tokens",
        tokens.list_tokens,
        access.BROWSER_SESSION,
        "My API tokens (never the secrets themselves)",
        shapes.TokenList,
        errors=(401, 403),
    ),
    Operation(
        "POST",
        "/api/tokens",
        tokens.create_token,
        access.BROWSER_SESSION,
        "Create an API token; the response shows the secret this once",
        shapes.CreatedToken,
        status=201,
        body=shapes.TokenRequest,
        errors=(401, 403, 409, 413, 422),
    ),
    Operation(
        "GET",
        "/api/live",
        public.live_now,
        access.PUBLIC,
        "Channels live now (tracked or in Twitch's top list), most viewers first",
        public.LivePage,
        queries=(p.GAME, p.LANGUAGE, p.LIMIT, p.RANK_CURSOR, p.FORMAT),
        csv=public.LiveRow,
        errors=PUBLIC_ERRORS,
    ),
    Operation(
        "GET",
        "/api/search",
        public.search_channels,
        access.PUBLIC,
        "Channels by login or display name (prefix, typos tolerated), live ones first",
        public.SearchResults,
        queries=(p.QUERY_TEXT, p.LIMIT, p.FORMAT),
        csv=public.ChannelFound,
        errors=PUBLIC_ERRORS,
    ),
    Operation(
        "GET",
        f"{CHANNEL}/history",
        public.channel_history,
        access.PUBLIC,
        "A channel's streams with viewer figures, title and category; chat figures only "
        "for those who may read the channel",
        public.History,
        queries=(p.WINDOW, p.LIMIT, p.CURSOR, p.DETAIL, p.FORMAT),
        csv=public.HistoryRow,
        errors=(404, *PUBLIC_ERRORS),
    ),
    Operation(
        "GET",
        "/api/stats/categories",
        public.category_stats,
        access.PUBLIC,
        "Per category over the window's whole UTC days, by hours watched",
        public.CategoryTable,
        queries=(p.WINDOW, p.LIMIT, p.FORMAT),
        csv=public.CategoryStats,
        errors=PUBLIC_ERRORS,
    ),
    Operation(
        "DELETE",
        "/api/tokens/{token_id}",
        tokens.revoke_token,
        access.BROWSER_SESSION,
        "Revoke one of my API tokens",
        None,
        status=204,
        errors=(401, 403, 404, 422),
    ),
    Operation(
        "GET",
        "/api/follows",
        follows.list_follows,
        access.SIGNED_IN,
        "The channels I follow (their online/offline reach me on /api/live/events)",
        shapes.FollowList,
        errors=(401,),
    ),
    Operation(
        "POST",
        "/api/follows",
        follows.add_follow,
        access.SIGNED_IN,
        "Follow a channel by broadcaster_id or login; 201 if new, 200 if already followed",
        shapes.Followed,
        status=201,
        body=shapes.FollowRequest,
        errors=(401, 403, 404, 413, 422, 503),
    ),
    Operation(
        "DELETE",
        "/api/follows/{broadcaster_id}",
        follows.remove_follow,
        access.SIGNED_IN,
        "Unfollow a channel (idempotent); the last follower out ends its tracking",
        None,
        status=204,
        errors=(401, 403, 422),
        channel_must_exist=False,
    ),
    Operation(
        "GET",
        "/api/live/events",
        follows.live_stream,
        access.SIGNED_IN,
        "Server-Sent Events (text/event-stream): online/offline of the channels I follow or"
        " own; id is the outbox sequence, resume with Last-Event-ID",
        None,
        errors=(401,),
    ),
)


def api_routes() -> list[Route]:
    return [*routes_of(OPERATIONS), openapi_route(OPERATIONS)]
