"""Configuration precedence, sources, validation errors and secret masking."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispara.config import SECRET_KEYS, load_config, mask, mask_dsn, reveal
from dispara.errors import ConfigError


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_when_nothing_is_configured() -> None:
    cfg = load_config(env={})
    assert cfg.file is None
    assert cfg.settings.tenant == "default"
    assert cfg.settings.database_url is None
    assert cfg.settings.evolution.typing_delay_ms == 1200
    assert dict(cfg.sources) == {}


def test_file_then_env_then_flags_win_in_order(tmp_path: Path) -> None:
    cfg_file = write(
        tmp_path / "c.yaml", "tenant: from-file\nevolution:\n  url: http://file\n  typing_delay_ms: 500\n"
    )
    env = {"DISPARA_TENANT": "from-env", "EVOLUTION_API_URL": "http://env"}
    cfg = load_config(config_file=str(cfg_file), env=env, flags={"tenant": "from-flag"})
    assert cfg.settings.tenant == "from-flag"
    assert cfg.settings.evolution.url == "http://env"
    assert cfg.settings.evolution.typing_delay_ms == 500
    assert cfg.sources["tenant"] == "flag --tenant"
    assert cfg.sources["evolution.url"] == "env EVOLUTION_API_URL"
    assert cfg.sources["evolution.typing_delay_ms"] == f"file {cfg_file}"


def test_file_found_through_env_and_in_working_dir(tmp_path: Path) -> None:
    named = write(tmp_path / "named.yaml", "tenant: named\n")
    assert load_config(env={"DISPARA_CONFIG": str(named)}).settings.tenant == "named"
    write(tmp_path / "dispara.yaml", "tenant: local\n")
    assert load_config(env={}).settings.tenant == "local"


def test_every_documented_env_name_is_read() -> None:
    env = {
        "DATABASE_URL": "postgresql://u:p@h/db",
        "QSTASH_TOKEN": "tok",
        "JOB_WEBHOOK": "https://hook",
        "SUPABASE_URL": "https://x.supabase.co",
        "DISPARA_DATA_DIR": "/tmp/somewhere",
        "GROQ_API_URL": "http://groq-stub",
    }
    s = load_config(env=env).settings
    assert (s.database_url, reveal(s.qstash.token), s.webhook.url) == (
        "postgresql://u:p@h/db",
        "tok",
        "https://hook",
    )
    assert (s.supabase.url, str(s.data_dir), s.groq.url) == (
        "https://x.supabase.co",
        "/tmp/somewhere",
        "http://groq-stub",
    )


def test_empty_env_value_counts_as_unset() -> None:
    assert load_config(env={"EVOLUTION_API_URL": ""}).settings.evolution.url is None


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    cfg_file = write(tmp_path / "c.yaml", "evolution:\n  urll: http://x\n")
    with pytest.raises(ConfigError) as err:
        load_config(config_file=str(cfg_file), env={})
    assert str(err.value) == f"file {cfg_file}: evolution.urll: unknown key"


def test_wrong_type_names_key_and_file(tmp_path: Path) -> None:
    cfg_file = write(tmp_path / "c.yaml", "worker:\n  concurrency: lots\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: worker\.concurrency: .*integer"):
        load_config(config_file=str(cfg_file), env={})


def test_broken_yaml_gives_line(tmp_path: Path) -> None:
    cfg_file = write(tmp_path / "c.yaml", "tenant: a\nevolution: [unclosed\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: line \d+: "):
        load_config(config_file=str(cfg_file), env={})


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(config_file=str(tmp_path / "nope.yaml"), env={})


def test_non_mapping_file_is_an_error(tmp_path: Path) -> None:
    cfg_file = write(tmp_path / "c.yaml", "- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(config_file=str(cfg_file), env={})


def test_secrets_are_masked_and_passwords_cut_from_dsns() -> None:
    assert mask("evolution.api_key", "B6D711FCDE4D4FD5936544120E713976") == "****3976"
    assert mask("groq.api_key", "short") == "****"
    assert mask("tenant", "acme") == "acme"
    assert mask("webhook.secret", None) == "-"
    assert (
        mask_dsn("postgresql://user:hunter2@db.example.com:5432/x")
        == "postgresql://user:****@db.example.com:5432/x"
    )
    assert "hunter2" not in mask("database_url", "host=db password=hunter2 user=u")


def test_example_config_documents_every_key() -> None:
    import yaml

    from dispara.config import Settings, _flatten

    example = Path(__file__).resolve().parents[2] / "config.example.yaml"
    documented = dict(_flatten(yaml.safe_load(example.read_text(encoding="utf-8"))))
    expected = dict(_flatten(Settings(data_dir=Path("/x")).model_dump()))
    assert set(documented) == set(expected)
    load_config(config_file=str(example), env={})  # and it is valid as written


def test_credentials_inside_urls_are_masked_everywhere_a_url_is_shown() -> None:
    from dispara.config import mask

    url = "https://admin:hunter22@evo.example.com:8443/base?token=tok-123456&region=br"
    shown = mask("evolution.url", url)
    assert "hunter22" not in shown and "tok-123456" not in shown
    assert shown == "https://admin:****@evo.example.com:8443/base?token=****&region=br"
    assert mask("webhook.url", "https://hooks.example.com/x?apikey=abcd1234") == (
        "https://hooks.example.com/x?apikey=****"
    )
    dsn = "postgresql://app:s3cret@db.example.com:5432/app?sslmode=require"
    assert mask("database_url", dsn) == "postgresql://app:****@db.example.com:5432/app?sslmode=require"


def test_config_show_masks_urls_in_text_and_json(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.helpers import run_cli

    monkeypatch.setenv("EVOLUTION_API_URL", "https://u:pa55word@evo.example.com/?token=t0k3n-xyz")
    monkeypatch.setenv("JOB_WEBHOOK", "https://hooks.example.com/in?secret=w3bh00k-sec")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    for args in (["config", "show"], ["config", "show", "--json"]):
        result = run_cli(capsys, *args)
        assert result.code == 0, result.err
        assert "evo.example.com" in result.out
        for secret in ("pa55word", "t0k3n-xyz", "w3bh00k-sec"):
            assert secret not in result.out + result.err


def test_the_file_is_read_as_yaml_12_like_campaign_files(tmp_path: Path) -> None:
    # One loader for both: YAML 1.1 would read 010 as 8 and `no` as False.
    cfg_file = write(tmp_path / "c.yaml", "tenant: no\nworker:\n  concurrency: 010\n")
    settings = load_config(config_file=str(cfg_file), env={}).settings
    assert (settings.worker.concurrency, settings.tenant) == (10, "no")


def test_a_duplicate_key_in_the_file_is_refused_with_its_line(tmp_path: Path) -> None:
    cfg_file = write(tmp_path / "c.yaml", "tenant: a\ntenant: b\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: line 2: duplicate key 'tenant'"):
        load_config(config_file=str(cfg_file), env={})


def test_secrets_are_typed_so_no_repr_or_dump_shows_them(tmp_path: Path) -> None:
    key = "sk-live-0123456789abcdef"
    env = {"EVOLUTION_API_KEY": key, "QSTASH_CURRENT_SIGNING_KEY": key, "DISPARA_API_KEY": key}
    cfg = load_config(env=env)
    assert key not in repr(cfg.settings) and key not in str(cfg.settings.model_dump())
    assert reveal(cfg.settings.evolution.api_key) == key  # only where it is sent
    shown = {k: mask(k, v) for k, v, _source in cfg.items()}
    assert shown["evolution.api_key"] == shown["server.api_key"] == "****cdef"
    assert "qstash.current_signing_key" in SECRET_KEYS and "evolution.url" not in SECRET_KEYS
