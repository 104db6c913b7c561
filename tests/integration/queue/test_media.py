"""Media templates: a local file reaches Evolution as base64, a URL as is, a missing file fails clearly."""

from __future__ import annotations

import base64
from pathlib import Path
from uuid import UUID

import pytest

from dispara.queue.worker import run_worker
from tests.helpers import run_cli
from tests.integration.queue.conftest import Conn, campaign_state, make_settings
from tests.stubs.evolution_stub import EvolutionStub

CAMPAIGN = """\
name: media
contacts: contatos.csv
instances: [loja]
delay: {min: 0, max: 0}
retries: 0
templates:
  - type: image
    media: promo.jpg
    caption: "Oferta para {nome}"
  - type: document
    media: https://cdn.example.com/catalogo.pdf
"""


def test_local_file_is_sent_as_base64_and_url_as_is(
    conn: Conn,
    db_dsn: str,
    tmp_path: Path,
    stub: EvolutionStub,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image = bytes(range(256)) * 40
    (tmp_path / "promo.jpg").write_bytes(image)
    (tmp_path / "contatos.csv").write_text(
        "telefone,nome\n11988880001,Ana\n11988880002,Bia\n", encoding="utf-8"
    )
    (tmp_path / "c.yaml").write_text(CAMPAIGN, encoding="utf-8")
    monkeypatch.setenv("DATABASE_URL", db_dsn)
    assert run_cli(capsys, "campaign", "send", str(tmp_path / "c.yaml")).code == 0

    assert conn.execute("SELECT started_at FROM campaigns").fetchone() == (None,)
    conn.commit()
    run_worker(make_settings(db_dsn, tmp_path / "data", evolution_url=stub.url), once=True, max_seconds=60)
    times = conn.execute("SELECT started_at, completed_at FROM campaigns").fetchone()
    assert times is not None and times[0] is not None and times[0] <= times[1]

    bodies = [r.body for r in stub.sends()]
    images = [b for b in bodies if b["mediatype"] == "image"]
    assert [b["caption"] for b in images] == ["Oferta para Ana", "Oferta para Bia"]
    assert all(base64.b64decode(b["media"]) == image and b["fileName"] == "promo.jpg" for b in images)
    documents = [b for b in bodies if b["mediatype"] == "document"]
    assert [b["media"] for b in documents] == ["https://cdn.example.com/catalogo.pdf"] * 2

    (tmp_path / "promo.jpg").unlink()
    assert run_cli(capsys, "campaign", "send", str(tmp_path / "c.yaml"), "--new").code == 4  # checked at send
    state = campaign_state(conn, _campaign_id(conn))
    assert (state["status"], state["sent_count"]) == ("completed", 4)


def _campaign_id(conn: Conn) -> UUID:
    row = conn.execute("SELECT id FROM campaigns").fetchone()
    assert row is not None
    return UUID(str(row[0]))


def test_media_file_gone_by_send_time_fails_the_message_clearly(tmp_path: Path) -> None:
    from dispara.errors import PermanentServiceError
    from dispara.queue.handlers import media_source

    assert media_source("https://x.example/a.png") == "https://x.example/a.png"
    with pytest.raises(PermanentServiceError, match=r"media file .*gone\.png is not readable on this worker"):
        media_source(str(tmp_path / "gone.png"))
