"""Audio job data: seed shapes validated, path templates filled, Ogg durations read from the container."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
import soundfile

from dispara.audio.ogg import opus_duration, opus_duration_of
from dispara.audio.payloads import TRANSCRIBE, TTS, fill_path, fill_upload_path, validate
from dispara.errors import InputError
from tests.stubs.audio_stubs import make_ogg

TTS_DATA = {
    "text_to_convert": "Olá",
    "output_bucket": "b",
    "output_path": "t/{job_id}.ogg",
    "id_sender": "11 98765-4321",
}


def test_tts_data_is_normalised() -> None:
    parsed = validate(TTS, TTS_DATA | {"extra": 1})
    assert parsed.id_sender == "5511987654321"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"text_to_convert": ""}, "data.text_to_convert: String should have at least 1 character"),
        ({"id_sender": None}, "data.id_sender: Input should be a valid string"),
        ({"id_sender": "abc"}, "data.id_sender: 'abc':"),
        ({"output_path": "../x.ogg"}, "object path '../x.ogg'"),
        ({"output_path": "t/{oops}.ogg"}, r"unknown placeholder \{oops\}"),
        ({"output_bucket": "a/b"}, "bucket 'a/b'"),
    ],
)
def test_bad_tts_data(change: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        validate(TTS, TTS_DATA | change)


def test_transcribe_targets_go_together() -> None:
    base = {"audio_bucket": "b", "audio_path": "a.ogg"}
    assert validate(TRANSCRIBE, base).target is None  # type: ignore[union-attr]
    full = validate(TRANSCRIBE, base | {"result_table": "t", "result_row_id": 7, "result_column": "c"})
    assert full.target == "t.c" and full.result_row_id == "7"  # type: ignore[union-attr]
    with pytest.raises(InputError, match="go together"):
        validate(TRANSCRIBE, base | {"result_table": "t"})
    with pytest.raises(InputError, match="unknown audio task type"):
        validate("nope", base)


def test_path_templates() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    path = fill_path(
        "tts/{date}/{id_sender}/{job_id}.ogg", id_sender="5511@s.whatsapp.net", job_id=9, now=now
    )
    assert path == "tts/2026-12-01/5511@s.whatsapp.net/9.ogg"
    assert fill_path("x/{id_sender}.ogg", id_sender="../../etc", job_id=1) == "x/_.._etc.ogg"
    upload = fill_upload_path("up/{date}/{uuid}-{name}", name="voz da Ana.ogg", now=now)
    assert upload.startswith("up/2026-12-01/") and upload.endswith("-voz_da_Ana.ogg")


@pytest.mark.parametrize("seconds", [0.3, 1.0, 2.5])
def test_opus_duration_matches_libsndfile(seconds: float) -> None:
    audio = make_ogg(seconds)
    expected = soundfile.info(io.BytesIO(audio)).duration
    assert opus_duration(audio) == pytest.approx(expected, abs=0.02)
    assert opus_duration_of(io.BytesIO(audio), len(audio)) == opus_duration(audio)


def test_not_opus_has_no_duration() -> None:
    assert opus_duration(b"ID3 mp3 data") is None
    assert opus_duration(b"OggS" + b"\x00" * 100) is None
