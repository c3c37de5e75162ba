"""Collector settings: a bad file is one line naming the file, the key and the value; the
database URL's password is never echoed; the TLS key must be private."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.settings import (
    CollectorSettings,
    SettingsError,
    audit_key,
    load_settings,
    parse_listen,
    redact_url,
    render_settings,
    write_audit_key,
)


@pytest.fixture
def tls_pair(tmp_path: Path) -> tuple[Path, Path]:
    tls = tmp_path / "tls"
    tls.mkdir()
    cert, key = tls / "cert.pem", tls / "key.pem"
    cert.write_text("cert\n", encoding="utf-8")
    key.write_text("key\n", encoding="utf-8")
    key.chmod(0o600)
    return cert, key


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "collector.yaml"
    path.write_text(text, encoding="utf-8")
    return path


MINIMAL = """
tls: {cert_file: tls/cert.pem, key_file: tls/key.pem}
database: sqlite:///medsec.db
"""


def test_defaults_and_relative_paths(tmp_path, tls_pair):
    settings = load_settings(write(tmp_path, MINIMAL))
    assert settings.listen == "127.0.0.1:8443"
    assert (settings.host, settings.port) == ("127.0.0.1", 8443)
    assert settings.tls.cert_file == str(tls_pair[0])
    assert settings.tls.key_file == str(tls_pair[1])
    assert settings.database == f"sqlite:///{tmp_path / 'medsec.db'}"
    assert settings.limits.max_report_bytes == 1_048_576
    assert settings.limits.max_future_skew_seconds == 300
    assert settings.enrollment.token_ttl_minutes == 60
    assert settings.audit.retention_days == 183


def test_full_settings(tmp_path, tls_pair):
    settings = load_settings(
        write(
            tmp_path,
            MINIMAL.replace("sqlite:///medsec.db", "postgresql+psycopg://medsec@db:5432/medsec")
            + """
listen: "[::1]:9443"
limits: {max_report_bytes: 2097152, max_future_skew_seconds: 60}
enrollment: {token_ttl_minutes: 15}
audit: {retention_days: 365}
""",
        )
    )
    assert (settings.host, settings.port) == ("::1", 9443)
    assert settings.database == "postgresql+psycopg://medsec@db:5432/medsec"
    assert settings.limits.max_report_bytes == 2_097_152
    assert settings.enrollment.token_ttl_minutes == 15
    assert settings.audit.retention_days == 365


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ("colour: red", "unknown key colour (value: 'red')"),
        ("tls: {cert_file: tls/cert.pem}", "missing key tls.key_file"),
        (
            "listen: 127.0.0.1",
            "listen: must be HOST:PORT, e.g. 127.0.0.1:8443 (value: '127.0.0.1')",
        ),
        ("listen: 'localhost:99999'", "listen: the port must be a number between 1 and 65535"),
        ("listen: 'bad host:80'", "listen: 'bad host' is neither an IP address nor a host name"),
        ("listen: '::1:80'", "write an IPv6 address in brackets"),
        ("listen: '300.1.1.1:80'", "'300.1.1.1' is not a valid IPv4 address"),
        ("limits: {max_report_bytes: 10}", "limits.max_report_bytes: must be between 1024"),
        ("limits: {max_future_skew_seconds: -1}", "limits.max_future_skew_seconds: must be"),
        ("limits: {max_report_bytes: lots}", "limits.max_report_bytes: Expected `int`"),
        ("enrollment: {token_ttl_minutes: 0}", "enrollment.token_ttl_minutes: must be between"),
        ("audit: {retention_days: 90}", "audit.retention_days: must be at least 183"),
        ("audit: {keep: forever}", "unknown key audit.keep (value: 'forever')"),
    ],
)
def test_bad_settings_name_file_key_and_value(tmp_path, tls_pair, extra, words):
    text = MINIMAL + extra + "\n"
    if extra.startswith("tls:"):
        text = extra + "\ndatabase: sqlite:///x.db\n"
    path = write(tmp_path, text)
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert words in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "url",
    [
        "mysql://root:hunter2secret@db/medsec",
        "postgresql://medsec:hunter2secret@db/medsec",  # psycopg2 driver: not ours
        "sqlite://hunter2secret",
    ],
)
def test_database_url_of_another_kind_is_refused_without_echoing_it(tmp_path, tls_pair, url):
    path = write(tmp_path, MINIMAL.replace("sqlite:///medsec.db", f"'{url}'"))
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    message = str(info.value)
    assert "database: must start with sqlite:/// or postgresql+psycopg://" in message
    assert "value not shown" in message
    assert "hunter2secret" not in message


def test_a_password_in_the_url_is_allowed_and_redacted_for_display(tmp_path, tls_pair):
    url = "postgresql+psycopg://medsec:hunter2secret@db:5432/medsec"
    settings = load_settings(write(tmp_path, MINIMAL.replace("sqlite:///medsec.db", url)))
    assert settings.database == url
    assert settings.database_for_display() == "postgresql+psycopg://medsec:***@db:5432/medsec"
    assert redact_url("postgresql+psycopg://u@h/db?password=x&sslmode=require") == (
        "postgresql+psycopg://u@h/db?password=***&sslmode=require"
    )


def test_wrong_type_for_database_is_not_echoed(tmp_path, tls_pair):
    path = write(tmp_path, MINIMAL.replace("sqlite:///medsec.db", "[hunter2secret]"))
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert "database: Expected `str`" in str(info.value)
    assert "hunter2secret" not in str(info.value)


def test_missing_tls_file(tmp_path, tls_pair):
    tls_pair[0].unlink()
    with pytest.raises(SettingsError, match=r"tls\.cert_file: .*cert\.pem does not exist"):
        load_settings(write(tmp_path, MINIMAL))


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o606, 0o777])
def test_a_key_other_users_can_read_is_refused(tmp_path, tls_pair, mode):
    tls_pair[1].chmod(mode)
    with pytest.raises(SettingsError) as info:
        load_settings(write(tmp_path, MINIMAL))
    message = str(info.value)
    assert f"tls.key_file: {tls_pair[1]} is accessible to every user (mode {mode:04o})" in message
    assert "chmod 600" in message


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o400])
def test_a_private_key_is_accepted(tmp_path, tls_pair, mode):
    tls_pair[1].chmod(mode)
    assert load_settings(write(tmp_path, MINIMAL)).tls.key_file == str(tls_pair[1])


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "the top level must be a mapping, got empty"),
        ("- a\n- b", "the top level must be a mapping, got a list"),
        ("tls: {cert_file: [unclosed", "invalid YAML at line 2"),
    ],
)
def test_malformed_files(tmp_path, text, words):
    with pytest.raises(SettingsError, match=words):
        load_settings(write(tmp_path, text))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(SettingsError, match="settings file not found"):
        load_settings(tmp_path / "nope.yaml")
    with pytest.raises(SettingsError, match="is a directory"):
        load_settings(tmp_path)


def test_not_utf8(tmp_path):
    path = tmp_path / "collector.yaml"
    path.write_bytes(b"listen: \xff\xfe\n")
    with pytest.raises(SettingsError, match="not UTF-8"):
        load_settings(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8443", ("127.0.0.1", 8443)),
        ("0.0.0.0:443", ("0.0.0.0", 443)),  # noqa: S104 — allowed when asked for explicitly
        ("[::1]:8443", ("::1", 8443)),
        ("collector.hospital.example:8443", ("collector.hospital.example", 8443)),
    ],
)
def test_parse_listen(text, expected):
    assert parse_listen(text) == expected


def test_rendered_settings_load_back(tmp_path, tls_pair):
    settings = load_settings(write(tmp_path, MINIMAL))
    again = write(tmp_path, render_settings(settings))
    assert load_settings(again) == settings
    assert isinstance(settings, CollectorSettings)


WITH_AUDIT_KEY = MINIMAL + "audit: {key_file: audit.key}\n"


def test_the_audit_key_is_read_relative_to_the_settings(tmp_path, tls_pair):
    key = tmp_path / "audit.key"
    write_audit_key(key)
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    settings = load_settings(write(tmp_path, WITH_AUDIT_KEY))
    assert settings.audit.key_file == str(key)
    found = audit_key(settings)
    assert found is not None
    assert found.keyed_from == 1
    assert f"key={found.secret.hex()}" in key.read_text()
    assert found.secret.hex() not in repr(found)
    with pytest.raises(FileExistsError):
        write_audit_key(key)  # never overwritten: the log verifies only with this key
    again = write(tmp_path, render_settings(settings))
    assert load_settings(again) == settings


@pytest.mark.parametrize(
    ("content", "mode", "words"),
    [
        (None, 0o600, "audit.key does not exist"),
        (f"key={'00' * 32}\nkeyed_from=1\n", 0o644, "accessible to other users (mode 0644)"),
        (f"key={'00' * 32}\nkeyed_from=1\n", 0o640, "accessible to other users (mode 0640)"),
        ("key=not hex at all\nkeyed_from=1\n", 0o600, "does not hold a key"),
        (f"key={'00' * 16}\nkeyed_from=1\n", 0o600, "does not hold a key"),
        (f"key={'00' * 32}\n", 0o600, "does not hold a key"),
        (f"key={'00' * 32}\nkeyed_from=0\n", 0o600, "does not hold a key"),
        ("\xff\xfe binary", 0o600, "does not hold a key"),
    ],
)
def test_a_bad_audit_key_is_one_line(tmp_path, tls_pair, content, mode, words):
    key = tmp_path / "audit.key"
    if content is not None:
        key.write_bytes(content.encode("latin-1"))
        key.chmod(mode)
    with pytest.raises(SettingsError) as info:
        load_settings(write(tmp_path, WITH_AUDIT_KEY))
    assert "audit.key_file: " in str(info.value)
    assert words in str(info.value)
    assert "\n" not in str(info.value)
    assert "00000000" not in str(info.value)  # never the file's content
