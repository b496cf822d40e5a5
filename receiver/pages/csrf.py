"""CSRF tokens for the pages' forms, on top of the SameSite=Lax session cookie.

A token is an HMAC of the login session's id under SESSION_SECRET: bound to that browser
session, nothing to store, and useless to a site that cannot read our pages.
"""

from __future__ import annotations

import hashlib
import hmac

from schema.errors import Forbidden
from schema.settings import Settings

FIELD = "csrf_token"


def token_for(settings: Settings, session_id: str) -> str:
    secret = settings.session_secret.get_secret_value() if settings.session_secret else ""
    return hmac.new(secret.encode(), b"csrf:" + session_id.encode(), hashlib.sha256).hexdigest()


def check(settings: Settings, session_id: str | None, sent: str | None) -> None:
    if session_id is None or not sent:
        raise Forbidden("this form is missing its security token; reload the page")
    if not hmac.compare_digest(token_for(settings, session_id), sent):
        raise Forbidden("this form's security token does not match; reload the page")
