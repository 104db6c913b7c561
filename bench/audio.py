"""Audio benchmark: audio jobs/s through stub services with ONE `dispara worker --once`, and the worker's
memory while 100 transcriptions of 5 MB files run.

    python bench/audio.py                 # 2,000 text-to-speech jobs, then 100 x 5 MB transcriptions
    python bench/audio.py --tts 500 --asr 50 --asr-mb 5

ElevenLabs, Groq and Evolution are local stubs in their own processes (answering at once), storage is the
local directory: what is measured is dispara (queue, storage, HTTP clients), not the providers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import ROOT, evolution_stub, fresh_database, stub_sends, worker_env

XI_KEY = "bench-xi-0123456789"
GROQ_KEY = "bench-gsk-0123456789"
NUMBER = "5511987654321"


def cpu_of(pid: int) -> float:
    """CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def audio_stubs() -> Iterator[tuple[str, str, int]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.stubs.audio_stubs", "--elevenlabs-key", XI_KEY, "--groq-key", GROQ_KEY],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        urls = [re.match(r"\w+=(\S+)", proc.stdout.readline()) for _ in range(2)]
        if not all(urls):
            raise RuntimeError("audio stubs did not start")
        yield urls[0].group(1), urls[1].group(1), proc.pid  # type: ignore[union-attr]
    finally:
        proc.terminate()
        proc.wait(10)


def seed(dsn: str, task_type: str, datas: list[dict[str, object]]) -> None:
    payloads = [json.dumps({"run_location": "supabase", "task_type": task_type, "data": d}) for d in datas]
    with psycopg.connect(dsn) as conn:
        tid = conn.execute(
            "INSERT INTO tenants (name) VALUES ('default') ON CONFLICT (name) DO UPDATE SET name = 'default' "
            "RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
        conn.execute("DELETE FROM jobs")
        conn.execute(
            "INSERT INTO jobs (tenant_id, payload) SELECT %s, p::jsonb FROM unnest(%s::text[]) p",
            (tid, payloads),
        )


def run_worker(env: dict[str, str], config: Path) -> tuple[str, int, float]:
    """Run `dispara worker --once`; returns its output line, peak RSS in KiB (sampled) and CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    spy = os.environ.get("BENCH_PY_SPY")  # a file: sample the worker with py-spy (collapsed stacks)
    command = [sys.executable, "-m", "dispara", "--config", str(config), "worker", "--once"]
    if spy:
        py_spy = str(Path(sys.executable).with_name("py-spy"))
        command = [py_spy, "record", "-f", "raw", "-o", spy, "-r", "200", "--", *command]
    proc = subprocess.Popen(
        command,
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    peak = [0]

    def sample() -> None:
        status = Path(f"/proc/{proc.pid}/status")
        while proc.poll() is None:
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak[0] = max(peak[0], int(line.split()[1]))
            except OSError:
                return
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"worker failed ({proc.returncode}):\n{out}{err}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return out.strip(), peak[0], cpu


def busy(dsn: str) -> tuple[int, int, float]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'completed'), count(*), "
            "extract(epoch FROM max(finished_at) - min(started_at))::float8 FROM jobs"
        ).fetchone()
        errors = conn.execute("SELECT last_error FROM jobs WHERE status <> 'completed' LIMIT 3").fetchall()
    assert row is not None
    if errors:
        print(f"  not completed, e.g.: {errors}")
    return int(row[0]), int(row[1]), float(row[2] or 0.0)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tts", type=int, default=2000, help="text-to-speech jobs for the throughput run")
    parser.add_argument("--asr", type=int, default=100, help="transcription jobs for the memory run")
    parser.add_argument("--asr-mb", type=float, default=5.0, help="size of each audio file, MB")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    with (
        fresh_database() as dsn,
        tempfile.TemporaryDirectory(prefix="dispara-audio-bench-") as tmp,
        audio_stubs() as (eleven_url, groq_url, stubs_pid),
        evolution_stub() as evolution_url,
    ):
        data_dir = Path(tmp) / "data"
        config = Path(tmp) / "dispara.yaml"
        config.write_text(
            json.dumps(
                {
                    "worker": {"concurrency": args.concurrency},
                    "evolution": {"typing_delay_ms": 0},
                    "audio": {"instance": "bench"},
                    "elevenlabs": {"voice_id": "voice-1"},
                }
            ),
            encoding="utf-8",
        )
        env = worker_env(dsn, data_dir, evolution_url) | {
            "ELEVENLABS_API_URL": eleven_url,
            "ELEVENLABS_API_KEY": XI_KEY,
            "GROQ_API_URL": groq_url,
            "GROQ_API_KEY": GROQ_KEY,
        }
        tts = [
            {"text_to_convert": f"Olá, pedido {i}", "output_bucket": "dispara-audio",
             "output_path": "tts/{date}/{job_id}.ogg", "id_sender": NUMBER}
            for i in range(args.tts)
        ]  # fmt: skip
        seed(dsn, "text-to-speech", tts)
        stub_cpu = cpu_of(stubs_pid)
        said, rss, cpu = run_worker(env, config)
        stub_cpu = cpu_of(stubs_pid) - stub_cpu
        done, total, seconds = busy(dsn)
        print(
            f"text-to-speech: {done}/{total} completed, {stub_sends(evolution_url)} voice notes at the stub"
        )
        print(f"  worker said: {said}")
        print(f"  throughput: {done / seconds:,.0f} jobs/s (first claim -> last completion, {seconds:.2f}s)")
        print(f"  worker peak RSS {rss / 1024:.0f} MiB, CPU {cpu / max(done, 1) * 1e3:.2f} ms per job")
        print(f"  ElevenLabs stub CPU {stub_cpu / max(done, 1) * 1e3:.2f} ms per job")
        if not args.asr:
            return 0
        source = data_dir / "storage" / "inbox" / "source.ogg"
        source.parent.mkdir(parents=True, exist_ok=True)
        with source.open("wb") as out:
            out.write(b"OggS")
            out.write(os.urandom(int(args.asr_mb * 1_000_000) - 4))
        for i in range(args.asr):  # hard links: 100 objects, one file's worth of disk
            os.link(source, source.with_name(f"voice-{i}.ogg"))
        asr = [
            {"audio_bucket": "inbox", "audio_path": f"voice-{i}.ogg", "id_sender": NUMBER}
            for i in range(args.asr)
        ]
        seed(dsn, "transcribe-audio", asr)
        said, rss, cpu = run_worker(env, config)
        done, total, seconds = busy(dsn)
        print(f"transcription: {done}/{total} completed of {args.asr_mb:g} MB each")
        print(f"  worker said: {said}")
        print(
            f"  throughput: {done / seconds:,.1f} jobs/s ({done * args.asr_mb / seconds:,.0f} MB/s uploaded)"
        )
        print(f"  worker peak RSS {rss / 1024:.0f} MiB, CPU {cpu / max(done, 1) * 1e3:.1f} ms per job")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
