"""The local Twitch's consent screen: pick a demo user, name a new one, or deny.

Twitch shows its own consent page at ``/oauth2/authorize``; the local one is a small form
with the same outcome: a redirect to ``redirect_uri`` with ``code`` and ``state``, or with
``error=access_denied`` (PROTOCOL.md 5.2). Tests queue a ``Consent`` instead and never see
this page.
"""

from __future__ import annotations

import html
import re
import secrets
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

if TYPE_CHECKING:
    from streamfold.twitch_local import TwitchStandin

# What the authorize request carried, passed through the form unchanged.
_CARRIED = ("client_id", "response_type", "redirect_uri", "scope", "state")
_LOGIN = re.compile(r"^[a-z0-9_]{3,25}$")  # Twitch logins: 4-25, we allow 3 for demos


async def answer(standin: TwitchStandin, request: Request) -> Response:
    """GET: the form. POST: the person's choice, turned into Twitch's redirect."""
    if request.method == "GET":
        return _form(standin, dict(request.query_params), "")
    fields = dict(parse_qsl((await request.body()).decode()))
    from streamfold.twitch_local import Consent

    redirect_uri, state = fields.get("redirect_uri", ""), fields.get("state", "")
    scope = fields.get("scope", "")
    if fields.get("client_id") != standin.client_id or not redirect_uri:
        return HTMLResponse("<p>invalid client or redirect_uri</p>", status_code=400)
    if fields.get("decision") == "deny":
        user = next(iter(standin.users.values()), None) or standin.add_user("0", "nobody")
        return standin.grant(Consent(user, deny=True), scope, redirect_uri, state)
    new_login = fields.get("new_login", "").strip().lower()
    if new_login:
        if not _LOGIN.fullmatch(new_login):
            return _form(standin, fields, "A login is 3-25 letters, digits or underscores.")
        existing = next((u for u in standin.users.values() if u.login == new_login), None)
        user = existing or standin.add_user(_new_id(standin), new_login)
    else:
        chosen = standin.users.get(fields.get("user_id", ""))
        if chosen is None:
            return _form(standin, fields, "Pick a user or name a new one.")
        user = chosen
    return standin.grant(Consent(user), scope, redirect_uri, state)


def _new_id(standin: TwitchStandin) -> str:
    while (candidate := str(500_000 + secrets.randbelow(400_000))) in standin.users:
        pass
    return candidate


def _form(standin: TwitchStandin, query: dict[str, str], problem: str) -> HTMLResponse:
    e = html.escape
    carried = "".join(
        f'<input type="hidden" name="{name}" value="{e(query.get(name, ""))}">' for name in _CARRIED
    )
    choices = "".join(
        f'<li><label><input type="radio" name="user_id" value="{e(u.id)}"'
        f"{' checked' if i == 0 else ''}> {e(u.display_name)}"
        f" <small>({e(u.login)}, id {e(u.id)})</small></label></li>"
        for i, u in enumerate(standin.users.values())
    )
    scopes = " ".join(query.get("scope", "").split()) or "none (identity only)"
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Local Twitch: authorize</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem}}
li{{list-style:none;margin:.4rem 0}}ul{{padding:0}}
button{{padding:.5rem 1rem;margin:.3rem .3rem 0 0}}
.problem{{color:#a00}}</style></head>
<body><main>
<h1>Local Twitch</h1>
<p>A stand-in for Twitch's consent screen: no Twitch account is involved.
The application asks for: <strong>{e(scopes)}</strong>.</p>
{f'<p class="problem" role="alert">{e(problem)}</p>' if problem else ""}
<form method="post" action="/oauth2/authorize">
{carried}
<fieldset><legend>Sign in as</legend><ul>{choices}</ul>
<label>or a new user: <input name="new_login" autocomplete="off" placeholder="login"></label>
</fieldset>
<button type="submit" name="decision" value="authorize">Authorize</button>
<button type="submit" name="decision" value="deny">Cancel</button>
</form></main></body></html>"""
    return HTMLResponse(body, headers={"Cache-Control": "no-store"})
