"""Field types shared by the read shapes and the API's other wire shapes.

msgspec checks the constraints when it decodes and writes them into ``/openapi.json``;
instants are aware UTC and leave as RFC 3339 with a ``Z``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

Instant = Annotated[
    datetime,
    msgspec.Meta(
        tz=True, extra_json_schema={"pattern": "Z$", "examples": ["2024-05-04T12:00:00Z"]}
    ),
]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Count = Annotated[int, msgspec.Meta(ge=0)]
