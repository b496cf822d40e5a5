"""Time partitions of the raw tables, and the copies that keep dedupe exact.

Each partitioned table (``SCHEMES``) is split by ``RANGE`` over one time column, one
partition per period (a UTC day for the per-message tables, a calendar month for the
viewer snapshots), plus a ``DEFAULT`` partition that takes any row whose period has no
partition yet (an old import, a test's fixed date, a retention job that did not run for
a while): a row is never refused for want of a partition. Creating a period's partition
moves that period's rows out of the default partition first.

``chat_messages`` and ``folded_messages`` are partitioned by ``day``, the UTC day of the
message's time; ``viewer_samples`` by ``sampled_at``, monthly (a poll every five minutes
is a few thousand rows a channel a month, and its hourly rollup ``viewer_hours`` is what
the reads use once the samples are gone).

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
from datetime import UTC, date, datetime, time, timedelta

DAY = timedelta(days=1)
# DEDUPE_HORIZON_SECONDS' default: ids of one message stamped less than this apart are
# recognised as one.
HORIZON = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Scheme:
    """How one table is partitioned: by which column, per day or per month, and how far
    around today partitions are kept made (the retention job runs daily; a missed week
    still finds its partitions, and after that rows wait in the default partition)."""

    table: str
    column: str
    monthly: bool
    around: timedelta
    timestamped: bool  # the column is a timestamptz (else a date)

    def start(self, d: date) -> date:
        """The first day of the period ``d`` lies in."""
        return d.replace(day=1) if self.monthly else d

    def after(self, d: date) -> date:
        """The first day of the next period."""
        start = self.start(d)
        if not self.monthly:
            return start + DAY
        if start.month == 12:
            return start.replace(year=start.year + 1, month=1)
        return start.replace(month=start.month + 1)

    def periods(self, first: date, last: date) -> list[date]:
        """The starts of every period from the one holding ``first`` to the one holding
        ``last``, both included."""
        out, d = [], self.start(first)
        while d <= last:
            out.append(d)
            d = self.after(d)
        return out

    def key(self, d: date) -> date | datetime:
        """Midnight UTC of ``d`` in the column's own type, for comparisons."""
        return datetime.combine(d, time(), tzinfo=UTC) if self.timestamped else d

    def literal(self, d: date) -> str:
        """``d`` as an SQL literal of the column's type (never the session's time zone)."""
        return f"'{d.isoformat()}T00:00:00+00:00'" if self.timestamped else f"'{d.isoformat()}'"

    def name(self, d: date) -> str:
        fmt = "%Y%m" if self.monthly else "%Y%m%d"
        return f"{self.table}_p{self.start(d):{fmt}}"

    def start_of_name(self, name: str) -> date | None:
        """The period a partition holds, from its name (None: not one of its periods)."""
        prefix, fmt = f"{self.table}_p", ("%Y%m" if self.monthly else "%Y%m%d")
        if not name.startswith(prefix) or len(name) != len(prefix) + (6 if self.monthly else 8):
            return None
        try:
            return datetime.strptime(name[len(prefix) :], fmt).replace(tzinfo=UTC).date()
        except ValueError:
            return None


# Day partitions are kept made a week back and ahead.
DAYS_AHEAD = 7
SCHEMES = {
    s.table: s
    for s in (
        Scheme("chat_messages", "day", monthly=False, around=DAYS_AHEAD * DAY, timestamped=False),
        Scheme("folded_messages", "day", monthly=False, around=DAYS_AHEAD * DAY, timestamped=False),
        Scheme("viewer_samples", "sampled_at", monthly=True, around=62 * DAY, timestamped=True),
    )
}
PARTITIONED_TABLES = tuple(SCHEMES)
DAILY_TABLES = tuple(t for t, s in SCHEMES.items() if not s.monthly)


def partition_name(table: str, day: date) -> str:
    """The partition of ``table`` that holds ``day``."""
    return SCHEMES[table].name(day)


def default_name(table: str) -> str:
    return f"{table}_default"


def utc_day(t: datetime) -> date:
    return t.astimezone(UTC).date()


def day_of_name(table: str, name: str) -> date | None:
    """The first day a partition of ``table`` holds, from its name (None: not one)."""
    return SCHEMES[table].start_of_name(name)


@dataclass(frozen=True, slots=True)
class PartitionStep:
    """One DDL step, as statements run in one transaction."""

    table: str
    day: date  # the first day of the period
    statements: tuple[str, ...]


def create_partition(table: str, day: date) -> PartitionStep:
    """Make the partition of ``table`` holding ``day``, taking its rows out of the
    default partition: a plain ``CREATE ... PARTITION OF`` fails if the default holds any."""
    scheme = SCHEMES[table]
    start = scheme.start(day)
    name, default = scheme.name(start), default_name(table)
    lo, hi = scheme.literal(start), scheme.literal(scheme.after(start))
    return PartitionStep(
        table,
        start,
        (
            # First, so no writer adds a row of that period to the default partition
            # between the move and the attach (which would then fail).
            f"LOCK TABLE {default} IN ACCESS EXCLUSIVE MODE",
            f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)",
            f"WITH moved AS (DELETE FROM {default}"  # noqa: S608 - our names
            f" WHERE {scheme.column} >= {lo} AND {scheme.column} < {hi}"
            f" RETURNING *) INSERT INTO {name} SELECT * FROM moved",
            f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ({lo}) TO ({hi})",
        ),
    )


def drop_partition(table: str, day: date) -> PartitionStep:
    start = SCHEMES[table].start(day)
    return PartitionStep(table, start, (f"DROP TABLE {partition_name(table, start)}",))


LIST_PARTITIONS = """
    SELECT c.relname FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
    WHERE p.relname = :table
"""


def parent_of(name: str) -> str | None:
    """The partitioned table ``name`` is a partition of, by name (None: not a partition)."""
    for t in SCHEMES:
        if name == default_name(t) or day_of_name(t, name) is not None:
            return t
    return None


def is_partition(name: str) -> bool:
    """A partition of a partitioned table, by name: autogenerate and the model check skip
    them (the models describe the partitioned tables; partitions come and go)."""
    return parent_of(name) is not None
