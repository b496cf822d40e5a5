"""Running the local Twitch beside ``streamfold dev``: demo users, its environment, and
``streamfold local-twitch``.

Without ``TWITCH_CLIENT_ID``, ``streamfold dev`` starts it as a child process on a free
port and points ``TWITCH_API_BASE``/``TWITCH_AUTH_BASE`` at it, so sign-in, subscriptions
and reconciliation all work with no Twitch account. Its state lives in memory: a restart
forgets grants, and the product then sees tokens Twitch no longer knows, as it would
after a real revocation.
"""

from __future__ import annotations

import secrets
import sys

import uvicorn

from streamfold.twitch_local import TwitchStandin

LOCAL_CLIENT_ID = "local-client-id"
# The demo streamers are the channels ``streamfold simulate`` sends events for; their
# logins match the events' broadcaster logins. The viewer is one of simulate's chatters.
DEMO_STREAMERS = (("1001", "channel_1001"), ("1002", "channel_1002"), ("1003", "channel_1003"))
DEMO_VIEWER = ("71001", "viewer_71001")
DEMO_BOT = ("9999", "streamfold_bot")  # the bot_id simulate's chat events name


def build_standin(client_id: str, client_secret: str) -> TwitchStandin:
    standin = TwitchStandin(client_id, client_secret)
    for user_id, login in (*DEMO_STREAMERS, DEMO_VIEWER, DEMO_BOT):
        standin.add_user(user_id, login, login.replace("_", " ").title().replace(" ", "_"))
    return standin


def environment(port: int) -> dict[str, str]:
    """What web and worker need to talk to a local Twitch on ``port``."""
    base = f"http://127.0.0.1:{port}"
    return {
        "TWITCH_CLIENT_ID": LOCAL_CLIENT_ID,
        "TWITCH_CLIENT_SECRET": "local-" + secrets.token_urlsafe(24),
        "TWITCH_API_BASE": f"{base}/helix",
        "TWITCH_AUTH_BASE": f"{base}/oauth2",
    }


def command(port: int) -> list[str]:
    return [sys.executable, "-m", "streamfold", "local-twitch", "--port", str(port)]


def serve(port: int, client_id: str, client_secret: str) -> None:
    """Serve the local Twitch on 127.0.0.1 (never on other interfaces) until stopped."""
    standin = build_standin(client_id, client_secret)
    uvicorn.run(standin.app, host="127.0.0.1", port=port, log_level="warning")
