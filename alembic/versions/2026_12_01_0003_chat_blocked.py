"""channels: the latest chat revocation and whether chat waits for a person

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 09:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("channels", sa.Column("chat_revocation", sa.String(length=64), nullable=True))
    op.add_column(
        "channels", sa.Column("chat_revoked_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "channels",
        sa.Column("chat_blocked", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("channels", "chat_blocked")
    op.drop_column("channels", "chat_revoked_at")
    op.drop_column("channels", "chat_revocation")
