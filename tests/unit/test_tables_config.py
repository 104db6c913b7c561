"""Config `tables:`: validated with one-line errors, shown by `config show`, installed for every command."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dispara.config import TablesConfig, load_config
from dispara.db import adopt, tables
from dispara.errors import ConfigError
from tests import renamed_tables
from tests.helpers import run_cli

pytestmark = pytest.mark.skipif(renamed_tables.ACTIVE, reason="the renamed run installs its own mapping")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("DISPARA_CONFIG", raising=False)
    yield
    tables.use({})


def test_every_logical_table_can_be_mapped() -> None:
    assert tuple(TablesConfig.model_fields) == tables.LOGICAL


def test_an_unknown_table_is_one_line_naming_the_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "dispara.yaml").write_text("tables:\n  messages: message_logs_x\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(env={})
    assert str(err.value) == (
        "file dispara.yaml: tables.messages: unknown table; "
        f"dispara's tables are: {', '.join(tables.LOGICAL)}"
    )


@pytest.mark.parametrize("name", ["a.b.c", "", "app.", ".x", 'msg"); SELECT pg_sleep(1); --', "my table"])
def test_a_malformed_name_is_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / "dispara.yaml").write_text(f"tables:\n  jobs: '{name}'\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"write a table as table or schema\.table"):
        tables.use({"jobs": name})
    with pytest.raises(ConfigError, match=r"tables\.jobs: .*write a table as table or schema\.table"):
        load_config(env={})


def test_config_show_lists_the_mapping_and_every_command_uses_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "dispara.yaml").write_text("tables:\n  message_logs: app.message_logs_x\n", encoding="utf-8")
    result = run_cli(capsys, "config", "show")
    assert result.code == 0, result.err
    shown = {line.split()[0]: line.split(maxsplit=1)[1] for line in result.out.splitlines()[1:]}
    assert shown["tables.message_logs"] == "app.message_logs_x  (file dispara.yaml)"
    assert shown["tables.jobs"] == "-  (default)"
    assert tables.renamed() == {"message_logs": ("app", "message_logs_x")}


def test_adopted_tables_ddl_becomes_a_no_op_where_it_exists() -> None:
    tables.use({"message_logs": "app.m", "jobs": "j"})
    text = (
        'CREATE TABLE "app"."m" (\n    id int\n);\nCREATE TABLE "j" (\n    id int\n);\n'
        'CREATE INDEX m_x ON "app"."m" (id);\nALTER TABLE "app"."m"\n    ADD COLUMN a int,\n'
        '    ADD COLUMN IF NOT EXISTS b int;\nALTER TABLE "j" ADD COLUMN c int;\n'
    )
    assert adopt.tolerant(text, ["message_logs"]) == (
        'CREATE TABLE IF NOT EXISTS "app"."m" (\n    id int\n);\nCREATE TABLE "j" (\n    id int\n);\n'
        'CREATE INDEX IF NOT EXISTS m_x ON "app"."m" (id);\nALTER TABLE "app"."m"\n'
        "    ADD COLUMN IF NOT EXISTS a int,\n    ADD COLUMN IF NOT EXISTS b int;\n"
        'ALTER TABLE "j" ADD COLUMN c int;\n'
    )


def test_a_delivery_names_its_message_by_number_or_uuid() -> None:
    from uuid import uuid4

    from dispara.db import message_id_json, parse_message_id
    from dispara.server.deliveries import BadDelivery, DeliveryBody

    key = uuid4()
    body = {"campaign_id": str(uuid4()), "tenant_id": str(uuid4())}
    assert DeliveryBody.from_mapping({**body, "message_id": 7}).message_id == 7
    assert DeliveryBody.from_mapping({**body, "message_id": message_id_json(key)}).message_id == key
    assert parse_message_id(message_id_json(key)) == key
    with pytest.raises(BadDelivery, match="message_id: not a number or a UUID"):
        DeliveryBody.from_mapping({**body, "message_id": "12"})
    with pytest.raises(BadDelivery, match="message_id: missing"):
        DeliveryBody.from_mapping({**body, "message_id": True})
