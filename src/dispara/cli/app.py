"""What every command shares: the effective configuration and a database connection, both made lazily."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from uuid import UUID

import click

if TYPE_CHECKING:
    from dispara.config import Config, Settings
    from dispara.db import Connection


@dataclass
class App:
    config_file: str | None
    tenant: str | None
    verbose: int = 0
    debug: bool = False
    _config: Config | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            from dispara.config import load_config
            from dispara.db import tables

            self._config = load_config(config_file=self.config_file, flags={"tenant": self.tenant})
            # Before any SQL is composed: every query and migration of this process uses these names.
            tables.use(self._config.settings.tables.mapping())
        return self._config

    @property
    def settings(self) -> Settings:
        return self.config.settings

    def connect(self, *, autocommit: bool = False) -> Connection:
        from dispara.db.connect import connect

        return connect(self.settings, autocommit=autocommit)

    def tenant_id(self, conn: Connection, *, create: bool = False) -> UUID:
        """The configured tenant; only commands that write pass `create` (reads never create one)."""
        from dispara.tenants import tenant_id

        return tenant_id(conn, self.settings.tenant, create=create)

    def campaign_id(self, conn: Connection, ref: str) -> UUID:
        """The tenant's campaign an operator names by id, id prefix or name."""
        from dispara.status import resolve

        return resolve(conn, self.tenant_id(conn), ref)


pass_app = click.make_pass_decorator(App)
