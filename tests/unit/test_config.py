"""Configuration: defaults, precedence, validation messages, redaction, the README reference."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from baton.config import ConfigError, load_config, redacted, reference_markdown

README = Path(__file__).resolve().parents[2] / "README.md"


def problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(env)
    return caught.value.problems


def test_defaults() -> None:
    config = load_config({})
    assert config.server.host == "127.0.0.1"
    assert config.server.port == 50051
    assert config.server.metrics_port == 9464
    assert config.storage.database_url.get_secret_value() == "sqlite+aiosqlite:///./baton.db"
    assert config.storage.auto_migrate is True
    assert config.storage.backend == "sqlite"
    assert config.telemetry.log_format == "json"
    assert config.server.event_loop == "auto"


def test_environment_is_case_insensitive_for_values_that_allow_it() -> None:
    assert load_config({"BATON_LOG_FORMAT": "CONSOLE"}).telemetry.log_format == "console"
    assert load_config({"BATON_AUTO_MIGRATE": "false"}).storage.auto_migrate is False


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"BATON_PORT": "abc"}, "BATON_PORT: 'abc' is not an integer between 1 and 65535"),
        ({"BATON_PORT": "70000"}, "BATON_PORT: '70000' is not an integer between 1 and 65535"),
        ({"BATON_AUTO_MIGRATE": "maybe"}, "BATON_AUTO_MIGRATE: 'maybe' is not true or false"),
        ({"BATON_LOG_LEVEL": "loud"}, "BATON_LOG_LEVEL: 'loud' is not one of debug, info, warning, error"),
        ({"BATON_EVENT_LOOP": "libev"}, "BATON_EVENT_LOOP: 'libev' is not one of auto, uvloop, asyncio"),
        (
            {"BATON_DATABASE_URL": "mysql://root:pw@db/baton"},
            "BATON_DATABASE_URL: (hidden) is not a sqlite+aiosqlite:// or postgresql+asyncpg:// URL",
        ),
        ({"BATON_JWT_SECRET": "short"}, "BATON_JWT_SECRET: (hidden) is not a string of at least 32 characters"),
        (
            {"BATON_BOOTSTRAP_ADMIN_API_KEY": "short"},
            "BATON_BOOTSTRAP_ADMIN_API_KEY: (hidden) is not a string of at least 32 characters",
        ),
        (
            {"BATON_TLS_CERT_FILE": "/nonexistent.pem"},
            "BATON_TLS_CERT_FILE: '/nonexistent.pem' is not a readable PEM file",
        ),
        (
            {"BATON_RATE_LIMIT_ROLE_MULTIPLIERS": "{bad"},
            "BATON_RATE_LIMIT_ROLE_MULTIPLIERS: '{bad' is not a JSON object of role name to positive number, "
            'e.g. {"worker": 20}',
        ),
    ],
)
def test_bad_values_name_the_variable_and_what_is_allowed(env: dict[str, str], expected: str) -> None:
    assert problems(env) == [expected]


def test_secret_values_never_appear_in_messages() -> None:
    lines = problems({"BATON_DATABASE_URL": "mysql://root:topsecret@db/baton", "BATON_JWT_SECRET": "tiny-secret"})
    assert not any("topsecret" in line or "tiny-secret" in line for line in lines)


def test_tls_cert_without_key(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    assert problems({"BATON_TLS_CERT_FILE": str(cert)}) == [
        "BATON_TLS_CERT_FILE and BATON_TLS_KEY_FILE must be set together"
    ]


def test_uvloop_asked_for_but_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_config({"BATON_EVENT_LOOP": "UVLOOP"}).server.event_loop == "uvloop"  # installed here
    monkeypatch.setitem(sys.modules, "uvloop", None)  # what importing it does where it is not installed
    assert problems({"BATON_EVENT_LOOP": "uvloop"}) == [
        "BATON_EVENT_LOOP=uvloop needs uvloop installed (it is not built for Windows); use auto or asyncio"
    ]
    assert load_config({}).server.event_loop == "auto"  # auto falls back to asyncio's loop instead


def test_asymmetric_jwt_needs_keys() -> None:
    assert problems({"BATON_JWT_ALGORITHM": "RS256"}) == [
        "BATON_JWT_ALGORITHM=RS256 needs BATON_JWT_PRIVATE_KEY_FILE and BATON_JWT_PUBLIC_KEY_FILE"
    ]


def test_toml_file_sections_and_precedence(tmp_path: Path) -> None:
    file = tmp_path / "baton.toml"
    file.write_text('[server]\nport = 6000\nhost = "0.0.0.0"\n[rate_limit]\nrate_limit_rps = 5\n')
    config = load_config({"BATON_CONFIG_FILE": str(file), "BATON_PORT": "7000"})
    assert config.server.port == 7000  # the environment wins
    assert config.server.host == "0.0.0.0"
    assert config.rate_limit.rate_limit_rps == 5
    assert config.config_file == file


def test_toml_file_problems(tmp_path: Path) -> None:
    file = tmp_path / "baton.toml"
    file.write_text('[server]\nport = "x"\nbogus = 1\n[nope]\n')
    assert problems({"BATON_CONFIG_FILE": str(file)}) == [
        "BATON_CONFIG_FILE: unknown section [nope]",
        "BATON_CONFIG_FILE: unknown key 'bogus' in [server]",
        "BATON_PORT: 'x' is not an integer between 1 and 65535",
    ]


def test_unreadable_and_malformed_toml(tmp_path: Path) -> None:
    assert problems({"BATON_CONFIG_FILE": str(tmp_path / "missing.toml")})[0].startswith(
        "BATON_CONFIG_FILE: cannot read"
    )
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    assert "is not valid TOML" in problems({"BATON_CONFIG_FILE": str(bad)})[0]


def test_redacted_hides_secrets_but_keeps_url_shape() -> None:
    config = load_config(
        {
            "BATON_DATABASE_URL": "postgresql+asyncpg://baton:pw-123456@db:5432/baton",
            "BATON_JWT_SECRET": "s" * 40,
            "BATON_REDIS_URL": "redis://:redispw@cache:6379/0",
        }
    )
    data = redacted(config)
    assert data["storage"]["database_url"] == "postgresql+asyncpg://baton:***@db:5432/baton"
    assert data["auth"]["jwt_secret"] == "**********"
    assert "redispw" not in str(data)
    assert "pw-123456" not in str(data)


def test_readme_configuration_reference_is_current() -> None:
    text = README.read_text()
    match = re.search(r"<!-- config-reference:start -->\n(.*?)<!-- config-reference:end -->", text, re.S)
    assert match, "README.md lacks the configuration reference markers"
    assert match.group(1) == reference_markdown(), "README configuration reference is stale: run scripts/gen"
