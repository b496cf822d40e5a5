"""Every error the API or the pages answer belongs to the one family in schema/errors.py,
so one handler turns each into its status and code."""

from __future__ import annotations

import inspect

import receiver.api.channels
import receiver.api.tokens
import receiver.oauth
import receiver.pages.csrf
import receiver.pages.views
from schema import errors


def test_errors_raised_by_the_api_and_pages_are_defined_in_the_one_family() -> None:
    modules = (
        receiver.oauth,
        receiver.api.tokens,
        receiver.api.channels,
        receiver.pages.views,
        receiver.pages.csrf,
    )
    for module in modules:
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, BaseException):
                # Library errors are caught and translated; none of ours lives elsewhere.
                assert value.__module__ != module.__name__, (module.__name__, name)
    for refusal in (errors.LoginFailed, errors.TooManyTokens, errors.TwitchClientMissing):
        assert issubclass(refusal, errors.StreamfoldError)


def test_a_failed_sign_in_carries_its_status_in_the_family() -> None:
    failure = errors.LoginFailed(403, "Access not granted", "You declined on Twitch.")
    assert (failure.status_code, failure.code, failure.detail) == (
        403,
        "login_failed",
        "You declined on Twitch.",
    )
