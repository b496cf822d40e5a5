"""The local Twitch's own pages and controls: the consent form redirects back as Twitch
does, and channels marked live through the local control are listed by Helix with an
audience that moves."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx

from streamfold.twitch_local import TwitchStandin
from streamfold.twitch_local_run import DEMO_STREAMERS, build_standin

AUTHORIZE = {
    "client_id": "cid",
    "response_type": "code",
    "redirect_uri": "http://127.0.0.1:8000/auth/twitch/callback",
    "scope": "channel:bot",
    "state": "s-123",
}


def _client(standin: TwitchStandin) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=standin.app), base_url="http://twitch.local"
    )


async def test_consent_page_lists_demo_users_and_grants_the_chosen_one() -> None:
    standin = build_standin("cid", "secret")
    async with _client(standin) as http:
        page = await http.get("/oauth2/authorize", params=AUTHORIZE)
        assert page.status_code == 200
        assert "channel_1001" in page.text
        assert 'name="state" value="s-123"' in page.text
        back = await http.post(
            "/oauth2/authorize", data={**AUTHORIZE, "user_id": "1001", "decision": "authorize"}
        )
        assert back.status_code == 302
        query = parse_qs(urlsplit(back.headers["location"]).query)
        assert query["state"] == ["s-123"]
        assert query["scope"] == ["channel:bot"]
        token = await http.post(
            "/oauth2/token",
            data={
                "client_id": "cid",
                "client_secret": "secret",
                "grant_type": "authorization_code",
                "code": query["code"][0],
                "redirect_uri": AUTHORIZE["redirect_uri"],
            },
        )
        assert token.status_code == 200
        assert standin.grants["1001"].scopes == ["channel:bot"]


async def test_consent_page_denies_and_names_new_users() -> None:
    standin = build_standin("cid", "secret")
    async with _client(standin) as http:
        denied = await http.post("/oauth2/authorize", data={**AUTHORIZE, "decision": "deny"})
        query = parse_qs(urlsplit(denied.headers["location"]).query)
        assert query["error"] == ["access_denied"]
        assert query["state"] == ["s-123"]
        named = await http.post(
            "/oauth2/authorize",
            data={**AUTHORIZE, "new_login": "Newcomer_1", "decision": "authorize"},
        )
        assert named.status_code == 302
        assert "code=" in named.headers["location"]
        assert any(u.login == "newcomer_1" for u in standin.users.values())
        bad = await http.post(
            "/oauth2/authorize", data={**AUTHORIZE, "new_login": "no way!", "decision": "x"}
        )
        assert bad.status_code == 200
        assert "A login is" in bad.text


async def test_local_control_marks_streams_live_with_moving_viewers() -> None:
    standin = build_standin("cid", "secret")
    standin.app_tokens.add("app-token")
    headers = {"client-id": "cid", "authorization": "Bearer app-token"}
    ids = [b for b, _ in DEMO_STREAMERS]
    async with _client(standin) as http:
        marked = await http.post(
            "/_local/streams",
            json={"streams": [{"broadcaster_id": b, "live": True, "viewers": 200} for b in ids]},
        )
        assert marked.json() == {"live": ids}
        counts = set()
        for _ in range(20):
            streams = (await http.get("/helix/streams", headers=headers)).json()["data"]
            assert {s["user_id"] for s in streams} == set(ids)
            counts |= {s["viewer_count"] for s in streams}
        assert len(counts) > 3
        assert all(100 < c < 300 for c in counts)
        await http.post("/_local/streams", json={"streams": [{"broadcaster_id": "1001"}]})
        streams = (await http.get("/helix/streams", headers=headers)).json()["data"]
        assert {s["user_id"] for s in streams} == {"1002", "1003"}
        refused = await http.post("/_local/streams", json={"nope": 1})
        assert refused.status_code == 400
