"""The README's commands, run as written against a fresh test database: the README cannot drift.

Every command of every `sh` block runs, in README order, in a subprocess. The few that are long-running
by nature run in a bounded form stated below with the reason; a command added to the README later runs
as written by default, and the test fails if it does not exit 0.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.stubs.audio_stubs import ElevenLabsStub, GroqStub, make_ogg
from tests.stubs.evolution_stub import EvolutionStub

ROOT = Path(__file__).resolve().parent.parent.parent
README = ROOT / "README.md"
TIMEOUT_S = 180
STUB_KEY = "readme-stub-key-0123456789"

# Steps that set the machine up rather than use dispara: CI runs them itself (.ci/run builds a fresh
# virtualenv and installs the package); here the package is already installed.
INSTALL_STEPS = ("python3 -m venv ", ". .venv/bin/activate", "pip install ")
# The test command itself: CI runs it (`test_ci_runs_exactly_the_readme_test_command`); here it would
# run this test again, forever.
SELF = "pytest"


@dataclass(frozen=True)
class Bounded:
    run: str
    """What runs instead; `{readme}` is the command as the README writes it."""
    reason: str
    expect: int = 0
    interrupt_after: str | None = None
    """Send Ctrl-C (SIGINT) once a line of output matches this pattern."""
    env_drop: tuple[str, ...] = ()


BOUNDED: dict[str, Bounded] = {
    "dispara worker": Bounded(
        "dispara worker --max-seconds 5",
        "a worker runs until Ctrl-C; five seconds show it starts, claims and stops gracefully",
    ),
    "dispara campaign send campaigns/black-friday.yaml --watch": Bounded(
        "{readme}",
        "--watch follows the campaign until it completes, which at Black Friday pacing takes minutes (hours "
        "outside the send window); Ctrl-C after the first progress line must end it with exit 130",
        expect=130,
        interrupt_after=r"Black Friday 2025: \w+ \d+/\d+",
    ),
    "dispara worker --log-format json --metrics-port 9464 --metrics-host 0.0.0.0": Bounded(
        "dispara worker --log-format json --metrics-port 0 --max-seconds 5",
        "a worker runs until Ctrl-C; five seconds show it starts with JSON logs and its metrics endpoint, "
        "on a free port of the loopback interface rather than a fixed public one",
    ),
    "dispara evolution webhook setup --all": Bounded(
        "{readme} --yes",
        "it asks before changing each instance's webhook; the test answers yes up front",
    ),
    "*/1 * * * * dispara redrive": Bounded(
        "dispara redrive --max-seconds 5",
        "a crontab line: the command it schedules runs once, draining for at most five seconds",
    ),
    "python bench/ingest.py 1000000": Bounded(
        "python bench/ingest.py 2000",
        "a million contacts take minutes; two thousand prove the benchmark runs and prints its figures",
    ),
    "dispara db stop": Bounded(
        "{readme}",
        "the test database is an external server (DATABASE_URL), so the command runs without it, on a "
        "data directory where no embedded server runs: it must say so and exit 0",
        env_drop=("DATABASE_URL",),
    ),
}


# Commands that talk to outside services run against the local stubs of those services (the environment a
# deployment would set), as written otherwise.
STUBBED = ("dispara audio ", "dispara evolution ")


def _without_comment(line: str) -> str:
    return re.sub(r"\s+#\s.*$", "", line).strip()


def _alternatives(command: str) -> list[str]:
    """`dispara campaign pause|resume|retry x` -> one command per alternative (a word with `|` in it)."""
    words = command.split(" ")
    for index, word in enumerate(words):
        if "|" in word and word.strip("|"):
            return [" ".join([*words[:index], choice, *words[index + 1 :]]) for choice in word.split("|")]
    return [command]


def readme_commands() -> list[str]:
    """Every command of the README's `sh` blocks, in order, with `a|b` alternatives expanded."""
    text = README.read_text(encoding="utf-8")
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL):
        for raw in block.splitlines():
            line = _without_comment(raw)
            if line and not line.startswith("#"):
                commands.extend(_alternatives(line))
    return commands


def steps(command: str) -> list[str]:
    """The parts of an `&&` chain this test runs: all but the install steps and the test suite itself."""
    parts = [part.strip() for part in command.split("&&")]
    return [p for p in parts if not p.startswith(INSTALL_STEPS) and p != SELF]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A copy of what the commands read (campaigns, benchmarks), so that nothing lands in the checkout,
    and the voice note the audio examples transcribe.
    """
    work = tmp_path / "checkout"
    for name in ("campaigns", "bench"):
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("*.rejected.csv", "out"))
    (work / "voice.ogg").write_bytes(make_ogg())
    return work


@pytest.fixture
def services(tmp_path: Path) -> Iterator[dict[str, str]]:
    """ElevenLabs, Groq and Evolution stubs, and the environment that points dispara at them."""
    config = tmp_path / "services.yaml"
    config.write_text("audio:\n  instance: atendimento\nevolution:\n  typing_delay_ms: 0\n", encoding="utf-8")
    with (
        ElevenLabsStub(api_key=STUB_KEY) as eleven,
        GroqStub(api_key=STUB_KEY) as groq,
        EvolutionStub(api_key=STUB_KEY) as evolution,
    ):
        yield {
            "DISPARA_CONFIG": str(config),
            "ELEVENLABS_API_URL": eleven.url,
            "ELEVENLABS_API_KEY": STUB_KEY,
            "ELEVENLABS_VOICE_ID": "voice-1",
            "GROQ_API_URL": groq.url,
            "GROQ_API_KEY": STUB_KEY,
            "EVOLUTION_API_URL": evolution.url,
            "EVOLUTION_API_KEY": STUB_KEY,
            "EVOLUTION_WEBHOOK_SECRET": "readme-webhook-secret-0123456789",
            "DISPARA_PUBLIC_URL": "https://dispara.example.com",
        }


def _env(cli_env: dict[str, str], drop: tuple[str, ...]) -> dict[str, str]:
    env = {k: v for k, v in cli_env.items() if k not in drop}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if drop:
        env["DISPARA_DATA_DIR"] = env["DISPARA_DATA_DIR"] + "-without-server"
    return env


def _run_interrupted(command: str, env: dict[str, str], cwd: Path, pattern: str) -> tuple[int, str]:
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {command}"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[str] = []
    deadline = time.monotonic() + TIMEOUT_S
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if re.search(pattern, line):
                proc.send_signal(signal.SIGINT)
                break
            assert time.monotonic() < deadline, "no progress line in time:\n" + "".join(seen)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, "".join(seen) + (rest or "")


def test_every_readme_command_runs_as_written(
    workdir: Path, cli_env: dict[str, str], services: dict[str, str]
) -> None:
    commands = readme_commands()
    assert len(commands) >= 15, commands  # the extraction itself must not silently find nothing
    ran: list[str] = []
    for command in commands:
        for step in steps(command):
            bounded = BOUNDED.get(step)
            env = _env(cli_env, bounded.env_drop if bounded else ())
            if step.startswith(STUBBED):
                env = {**env, **services}
            actual = bounded.run.format(readme=step) if bounded else step
            if bounded and bounded.interrupt_after:
                code, output = _run_interrupted(actual, env, workdir, bounded.interrupt_after)
            else:
                proc = subprocess.run(
                    ["bash", "-c", actual],
                    cwd=workdir,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=TIMEOUT_S,
                    check=False,
                )
                code, output = proc.returncode, proc.stdout + proc.stderr
            expected = bounded.expect if bounded else 0
            assert code == expected, f"README command `{step}` (ran `{actual}`) exited {code}:\n{output}"
            assert "Traceback" not in output, f"`{actual}`:\n{output}"
            ran.append(step)
    unused = set(BOUNDED) - set(ran)
    assert not unused, f"bounded forms of commands the README no longer has: {sorted(unused)}"


def test_the_tour_campaign_ships_with_its_contacts() -> None:
    tour = [c for c in readme_commands() if "campaigns/" in c]
    files = {m for c in tour for m in re.findall(r"campaigns/[\w.-]+\.yaml", c)}
    assert files == {"campaigns/example.yaml", "campaigns/black-friday.yaml"}
    for name in files:
        assert (ROOT / name).is_file()
    assert (ROOT / "campaigns" / "black-friday-contatos.csv").is_file()


def test_alternatives_and_chains_are_split_as_a_shell_reader_would() -> None:
    assert _alternatives("dispara campaign pause|resume x") == [
        "dispara campaign pause x",
        "dispara campaign resume x",
    ]
    assert _alternatives("a | b") == ["a | b"]  # a real pipe stays one command
    assert steps("python3 -m venv .venv && . .venv/bin/activate && pip install -e . && dispara x") == [
        "dispara x"
    ]
    assert steps("pip install -e '.[test]' && pytest") == []
