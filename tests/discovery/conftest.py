"""The discovery tests use the reconciliation rig (stand-in, PostgreSQL, Redis)."""

from tests.aggregator.conftest import rig as rig

__all__ = ["rig"]
