"""`dispara audio tts|transcribe`: queue an audio job; with --wait, follow it to the end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from dispara.cli.app import App, pass_app

RUN_LOCATIONS = click.Choice(["supabase", "external"])


@click.group()
def audio() -> None:
    """Text-to-speech and transcription jobs, delivered on WhatsApp.

    \b
    Example:
      dispara audio tts "Olá, seu pedido saiu para entrega" --to 5511987654321 --wait
      dispara audio transcribe voice.ogg --to 5511987654321 --wait
    """


def _common(func: Any) -> Any:
    for decorator in reversed(
        [
            click.option("--instance", metavar="NAME", help="Evolution instance that delivers."),
            click.option(
                "--run-location", type=RUN_LOCATIONS, default="supabase", show_default=True,
                help="Run in dispara's worker, or hand the job to EXTERNAL_WORKER_URL.",
            ),
            click.option("--wait", is_flag=True, help="Follow the job to its end."),
            click.option("--json", "as_json", is_flag=True, help="Print JSON."),
        ]
    ):  # fmt: skip
        func = decorator(func)
    return func


@audio.command("tts")
@click.argument("text")
@click.option("--to", "to", required=True, metavar="NUMBER", help="WhatsApp number that gets the voice note.")
@click.option(
    "--voice-id", metavar="V", help="ElevenLabs voice (else ELEVENLABS_VOICE_ID / elevenlabs-voice-id)."
)
@click.option("--bucket", metavar="B", help="Storage bucket (default supabase.bucket).")
@click.option(
    "--path", "path", metavar="TEMPLATE", help="Object path; {id_sender}, {job_id}, {date} (audio.tts_path)."
)
@_common
@pass_app
def tts(app: App, text: str, to: str, voice_id: str | None, bucket: str | None, path: str | None,
        instance: str | None, run_location: str, wait: bool, as_json: bool) -> None:  # fmt: skip
    """Turn TEXT into speech and send it to --to as a WhatsApp voice note.

    \b
    Example:
      dispara audio tts "Olá!" --to 5511987654321 --wait
    """
    from dispara.audio.jobs import tts_data
    from dispara.audio.payloads import TTS

    data = tts_data(
        app.settings, text, id_sender=to, voice_id=voice_id, output_bucket=bucket, output_path=path,
        instance=instance,
    )  # fmt: skip
    _submit(app, TTS, data, run_location, wait, as_json)


@audio.command("transcribe")
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--bucket", metavar="B", help="Storage bucket (default supabase.bucket).")
@click.option(
    "--path", "path", metavar="P", help="Object path in the bucket (where FILE is uploaded, if given)."
)
@click.option("--to", "to", metavar="NUMBER", help="WhatsApp number that gets the transcript.")
@click.option(
    "--result-table", metavar="T", help="Table to write the text to (must be in audio.result_targets)."
)
@click.option("--result-row-id", metavar="ID", help="Id of the row to write.")
@click.option("--result-column", metavar="C", help="Column to write.")
@click.option("--language", metavar="LANG", help="Spoken language, ISO 639-1 (default audio.language).")
@_common
@pass_app
def transcribe(app: App, file: Path | None, bucket: str | None, path: str | None, to: str | None,
               result_table: str | None, result_row_id: str | None, result_column: str | None,
               language: str | None, instance: str | None, run_location: str, wait: bool,
               as_json: bool) -> None:  # fmt: skip
    """Transcribe FILE (uploaded to storage first) or the object at --bucket/--path.

    \b
    Example:
      dispara audio transcribe voice.ogg --to 5511987654321 --wait
      dispara audio transcribe --bucket inbox --path 2026/a.ogg --result-table messages \\
          --result-row-id 42 --result-column transcript
    """
    from dispara.audio.jobs import transcribe_data, upload_file
    from dispara.audio.payloads import TRANSCRIBE
    from dispara.errors import InputError

    settings = app.settings
    bucket = bucket or settings.supabase.bucket
    if file is None and not path:
        raise InputError("give a FILE to transcribe, or --path (and --bucket) of one in storage")
    given = {
        "audio_bucket": bucket,
        "audio_path": path or "pending-upload.ogg",
        "id_sender": to,
        "result_table": result_table,
        "result_row_id": result_row_id,
        "result_column": result_column,
        "language": language,
        "instance": instance,
    }
    data = transcribe_data(settings, **given)  # everything checked before the upload
    if file is not None:
        stored = upload_file(settings, file, bucket=bucket, path=path)
        data = transcribe_data(settings, **{**given, "audio_path": stored.path})
        if not as_json:
            click.echo(f"uploaded {file} to {stored.bucket}/{stored.path}", err=True)
    _submit(app, TRANSCRIBE, data, run_location, wait, as_json)


def _submit(
    app: App, task_type: str, data: dict[str, Any], run_location: str, wait: bool, as_json: bool
) -> None:
    from dispara.audio.handlers import install
    from dispara.audio.jobs import submit

    with app.connect() as conn:
        tenant_id = app.tenant_id(conn, create=True)  # enqueueing writes: the tenant may be new
        job_id = submit(conn, tenant_id, app.settings, task_type, data, run_location=run_location)
        conn.commit()
    if not wait:
        if as_json:
            click.echo(json.dumps({"job_id": job_id, "task_type": task_type, "status": "pending"}))
        else:
            click.echo(f"job {job_id} queued ({task_type}); a worker runs it (dispara worker)")
        return
    from dispara.errors import ServiceError
    from dispara.queue.follow import follow

    install()
    notice = None if as_json else (lambda text: click.echo(text, err=True))
    state = follow(app.settings, tenant_id, job_id, notice=notice)
    if as_json:
        body = {"job_id": job_id, "task_type": task_type, "status": state.status, "result": state.result,
                "error": state.last_error}  # fmt: skip
        click.echo(json.dumps(body, ensure_ascii=False))
    if state.status != "completed":
        raise ServiceError(f"job {job_id} {state.status}: {state.last_error or 'no error recorded'}")
    if not as_json:
        click.echo(f"job {job_id} completed")
        for key, value in (state.result or {}).items():
            click.echo(f"  {key}: {value}")
