"""The page routes and their static assets (served from the package, never a CDN)."""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from receiver.pages import discover, views

STATIC = Path(__file__).parent / "static"


def page_routes() -> list[BaseRoute]:
    r = views.page_route
    return [
        Route("/", r(views.home, public=True)),
        Route("/live", r(discover.live, public=True)),
        Route("/search", r(discover.search, public=True)),
        Route("/categories", r(discover.categories, public=True)),
        Route("/c/{broadcaster_id}", r(discover.channel, public=True)),
        Route("/dashboard", r(views.dashboard_for_me)),
        Route("/me", r(views.viewer)),
        Route("/channels/{broadcaster_id}", r(views.dashboard)),
        Route("/channels/{broadcaster_id}/{action}", r(views.confirm), methods=["GET", "POST"]),
        Route("/signout", r(views.sign_out), methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
