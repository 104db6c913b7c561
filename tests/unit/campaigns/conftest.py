"""Fixtures that write campaign folders: a YAML file and its contacts CSV side by side."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.campaigns.helpers import CONTACTS, MINIMAL, WriteCampaign


@pytest.fixture
def write_campaign(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WriteCampaign:
    """Write `campaigns/bf.yaml` and `campaigns/contacts.csv` under tmp_path and chdir there, so
    errors read `campaigns/bf.yaml: ...` exactly as an operator sees them."""
    monkeypatch.chdir(tmp_path)

    def write(yaml_text: str = MINIMAL, contacts: str | bytes = CONTACTS, name: str = "bf.yaml") -> Path:
        folder = tmp_path / "campaigns"
        folder.mkdir(exist_ok=True)
        csv_path = folder / "contacts.csv"
        if isinstance(contacts, bytes):
            csv_path.write_bytes(contacts)
        else:
            csv_path.write_text(contacts, encoding="utf-8")
        (folder / name).write_text(yaml_text, encoding="utf-8")
        return Path("campaigns") / name

    return write
