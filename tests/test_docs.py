"""What the repository tells its readers is true: files it names exist, nothing points outside it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import yaml

from dispara.cli import COMMANDS, cli
from dispara.config import Settings

ROOT = Path(__file__).resolve().parent.parent
TEXT_FILES = ("src", "tests", "bench", "docs", "campaigns")
# How a pointer to the provider notes kept beside the project (not in it) would read.
OUTSIDE = re.compile(r"/work/|\.\./shared|\bcontracts/\w+\.md")


def _help_texts() -> Iterator[tuple[str, str]]:
    ctx = click.Context(cli)
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        assert command is not None
        commands = [command, *getattr(command, "commands", {}).values()]
        for each in commands:
            yield f"{name} {each.name}", each.help or ""


def test_every_campaign_file_named_in_help_texts_exists() -> None:
    named = {(where, m) for where, text in _help_texts() for m in re.findall(r"campaigns/[\w.-]+", text)}
    assert named, "the help texts name no campaign file: the check checks nothing"
    missing = [(where, path) for where, path in named if not (ROOT / path).is_file()]
    assert not missing


def test_nothing_points_outside_the_repository() -> None:
    offenders = []
    files = [ROOT / "README.md", ROOT / "config.example.yaml", ROOT / "BENCHMARKS.md"]
    for folder in TEXT_FILES:
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in {".py", ".md", ".sql", ".yaml"}]
    for path in files:
        if path == Path(__file__):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def _keys(data: dict[str, object], prefix: str = "") -> set[str]:
    found = set()
    for key, value in data.items():
        if isinstance(value, dict):
            found |= _keys(value, f"{prefix}{key}.")
        else:
            found.add(f"{prefix}{key}")
    return found


def test_config_example_documents_exactly_the_settings_there_are() -> None:
    example = yaml.safe_load((ROOT / "config.example.yaml").read_text(encoding="utf-8"))
    assert _keys(example) == _keys(Settings().model_dump(mode="json"))


def test_every_environment_variable_in_the_readme_is_read() -> None:
    from dispara.config import ENV_KEYS

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = [line for line in readme.splitlines() if line.startswith("| `")]
    named = {name for line in table for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1])}
    assert named and named <= set(ENV_KEYS), named - set(ENV_KEYS)
