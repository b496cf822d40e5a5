"""Daily partitions of the raw per-message tables, and the copies that keep dedupe exact.

``chat_messages`` and ``folded_messages`` are partitioned by ``RANGE (day)``, the UTC day
of the message's time, one partition per day plus a ``DEFAULT`` partition that takes any
row whose day has no partition yet (an old import, a test's fixed date, a retention job
that did not run for a week): a row is never refused for want of a partition. Creating a
day's partition moves that day's rows out of the default partition first.

Dedupe across partitions: a partitioned table's unique key must contain the partition
key, so ``(message_id, day)`` is unique, not ``message_id``. A message whose time ``t``
lies within ``H`` (``DEDUPE_HORIZON_SECONDS``) of the next day is written twice: into
``day(t)`` (the primary) and into ``day(t + H)`` (a copy, ``is_copy`` in chat_messages).
Two deliveries of one id whose times differ by less than ``H`` share at least one day
(with ``t1 <= t2 < t1 + H``, ``day(t2)`` is ``day(t1)`` or ``day(t1 + H)``, since a day
is longer than ``H``), so one of their rows conflicts: a message is new only if every
one of its rows was inserted. Only ids within ``H`` of midnight get a copy: ``H / 24 h``
more rows (about 4 % for an hour).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

DAY = timedelta(days=1)
# The tables partitioned by day, and the partitions made ahead of today (the retention
# job runs daily; a week of missed runs still finds its partitions, and after that rows
# wait in the default partition, not refused).
DAILY_TABLES = ("chat_messages", "folded_messages")
DAYS_AHEAD = 7
# DEDUPE_HORIZON_SECONDS' default: ids of one message stamped less than this apart are
# recognised as one.
HORIZON = timedelta(hours=1)


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def default_name(table: str) -> str:
    return f"{table}_default"


def utc_day(t: datetime) -> date:
    return t.astimezone(UTC).date()


def day_of_name(table: str, name: str) -> date | None:
    """The day a partition of ``table`` holds, from its name (None: not a day partition)."""
    prefix = f"{table}_p"
    if not name.startswith(prefix) or len(name) != len(prefix) + 8:
        return None
    try:
        return datetime.strptime(name[len(prefix) :], "%Y%m%d").replace(tzinfo=UTC).date()
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class PartitionStep:
    """One DDL step, as statements run in one transaction."""

    table: str
    day: date
    statements: tuple[str, ...]


def create_partition(table: str, day: date) -> PartitionStep:
    """Make ``day``'s partition of ``table``, taking its rows out of the default
    partition: a plain ``CREATE ... PARTITION OF`` fails if the default holds any."""
    name, default = partition_name(table, day), default_name(table)
    lo, hi = day.isoformat(), (day + DAY).isoformat()
    return PartitionStep(
        table,
        day,
        (
            # First, so no fold adds a row of that day to the default partition between
            # the move and the attach (which would then fail).
            f"LOCK TABLE {default} IN ACCESS EXCLUSIVE MODE",
            f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)",
            f"WITH moved AS (DELETE FROM {default} WHERE day >= '{lo}' AND day < '{hi}'"  # noqa: S608 - our names
            f" RETURNING *) INSERT INTO {name} SELECT * FROM moved",
            f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ('{lo}') TO ('{hi}')",
        ),
    )


def drop_partition(table: str, day: date) -> PartitionStep:
    return PartitionStep(table, day, (f"DROP TABLE {partition_name(table, day)}",))


def days_between(first: date, last: date) -> list[date]:
    """Every day from ``first`` to ``last``, both included."""
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


LIST_PARTITIONS = """
    SELECT c.relname FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
    WHERE p.relname = :table
"""


def is_partition(name: str) -> bool:
    """A partition of a daily table, by name: autogenerate and the model check skip them
    (the models describe the partitioned tables; partitions come and go by day)."""
    return any(name == default_name(t) or day_of_name(t, name) is not None for t in DAILY_TABLES)
