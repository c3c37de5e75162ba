"""The `alerts:` settings: a webhook only over https (or http to loopback), its secret file
beside the settings, private and not empty; syslog a socket path or HOST:PORT and a known
facility. Each problem is one line naming the file and the key, never the URL (a receiver's
token may be in it) nor the secret."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from collector.settings import (
    CollectorSettings,
    SettingsError,
    load_settings,
    render_settings,
)

MINIMAL = """
tls: {cert_file: tls/cert.pem, key_file: tls/key.pem}
database: sqlite:///medsec.db
"""
IN_URL = "s3cr3t-t0k3n"  # what a receiver puts in its URL: never shown
SECRET = b"0123456789abcdef0123456789abcdef"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    tls = tmp_path / "tls"
    tls.mkdir()
    (tls / "cert.pem").write_text("cert\n", encoding="utf-8")
    (tls / "key.pem").write_text("key\n", encoding="utf-8")
    (tls / "key.pem").chmod(0o600)
    secret = tmp_path / "webhook.secret"
    secret.write_bytes(SECRET + b"\n")
    secret.chmod(0o600)
    return tmp_path


def load(folder: Path, alerts: dict[str, object]) -> CollectorSettings:
    """The settings with this `alerts:` section, their files checked as at start-up."""
    path = folder / "collector.yaml"
    path.write_text(MINIMAL + yaml.safe_dump({"alerts": alerts}), encoding="utf-8")
    settings = load_settings(path)
    settings.alerts.check_files(str(path))  # (load_settings may already have: same check)
    return settings


def test_relative_files_are_beside_the_settings_and_round_trip(folder):
    (folder / "ca.pem").write_text("ca\n", encoding="utf-8")
    settings = load(
        folder,
        {
            "webhook": {
                "url": f"https://siem.example:8443/medsec?token={IN_URL}",
                "secret_file": "webhook.secret",
                "ca_file": "ca.pem",
                "max_attempts": 5,
            },
            "syslog": {"address": "[::1]:514", "facility": "local3"},
        },
    )
    hook, log = settings.alerts.webhook, settings.alerts.syslog
    assert hook is not None
    assert log is not None
    assert hook.secret_file == str(folder / "webhook.secret")
    assert hook.ca_file == str(folder / "ca.pem")
    assert (hook.timeout_seconds, hook.max_attempts, hook.retry_seconds) == (10.0, 5, 2.0)
    assert (log.udp, log.facility) == (("::1", 514), "local3")
    assert settings.alerts.channels == ("webhook", "syslog")
    again = folder / "again.yaml"
    again.write_text(render_settings(settings), encoding="utf-8")
    assert load_settings(again) == settings


def test_no_alerts_section_means_no_channel_and_renders_as_empty(folder):
    settings = load(folder, {})
    assert settings.alerts.channels == ()
    assert "alerts: {}\n" in render_settings(settings)
    assert load(folder, {"syslog": {}}).alerts.syslog.address == "/dev/log"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("alerts", "words"),
    [
        (
            {"webhook": {"url": f"http://siem.example/hook?token={IN_URL}", "secret_file": "s"}},
            "alerts.webhook: url must be https://; http:// only to a loopback address",
        ),
        (
            {"webhook": {"url": f"http://198.18.9.9/hook?token={IN_URL}", "secret_file": "s"}},
            "alerts.webhook: url must be https://; http:// only to a loopback address",
        ),
        (
            {"webhook": {"url": f"ftp://siem.example/{IN_URL}", "secret_file": "s"}},
            "alerts.webhook: url must start with https://",
        ),
        (
            {"webhook": {"url": f"https://user:{IN_URL}@siem.example/", "secret_file": "s"}},
            "alerts.webhook: url must not carry a user or password",
        ),
        (
            {"webhook": {"url": f"https://siem example/{IN_URL}", "secret_file": "s"}},
            "alerts.webhook: url must be one URL",
        ),
        ({"webhook": {"url": "https://siem.example/"}}, "missing key alerts.webhook.secret_file"),
        (
            {"webhook": {"url": "https://siem.example/", "secret_file": "s", "max_attempts": 0}},
            "alerts.webhook.max_attempts: must be between 1 and 100 (value: 0)",
        ),
        (
            {"webhook": {"url": "https://a.example/", "secret_file": "s", "timeout_seconds": 0}},
            "alerts.webhook.timeout_seconds: must be between 0.1 and 300",
        ),
        (
            {"syslog": {"address": "syslog.example"}},
            "alerts.syslog.address: must be a Unix socket's absolute path (/dev/log) or HOST:PORT"
            " of a syslog server over UDP (value: 'syslog.example')",
        ),
        (
            {"syslog": {"address": "127.0.0.1:70000"}},
            "alerts.syslog.address: must be a Unix socket's absolute path (/dev/log) or HOST:PORT"
            " of a syslog server over UDP: the port must be a number between 1 and 65535",
        ),
        ({"syslog": {"facility": "local8"}}, "alerts.syslog.facility: must be one of kern, user"),
        ({"syslog": {"level": "debug"}}, "unknown key alerts.syslog.level"),
        ({"poll_seconds": 0}, "alerts.poll_seconds: must be between 0.05 and 60"),
    ],
)
def test_bad_alert_settings_are_one_line_naming_the_key(folder, alerts, words):
    with pytest.raises(SettingsError) as info:
        load(folder, alerts)
    message = str(info.value)
    assert message.startswith(f"{folder / 'collector.yaml'}: ")
    assert words in message
    assert "\n" not in message
    assert IN_URL not in message


@pytest.mark.parametrize(
    ("content", "mode", "words"),
    [
        (None, None, "does not exist"),
        (SECRET, 0o644, "is accessible to other users (mode 0644); run chmod 600 on it"),
        (SECRET, 0o640, "is accessible to other users (mode 0640)"),
        (b" \n\t\n", 0o600, "is empty (write the shared secret in it)"),
        ("folder", 0o700, "cannot be read (Is a directory)"),
    ],
)
def test_the_secret_file_must_be_private_and_hold_a_secret(folder, content, mode, words):
    path = folder / "hook.secret"
    if content == "folder":
        path.mkdir(mode=mode)
    elif content is not None:
        path.write_bytes(content)
        path.chmod(mode)
    hook = {"url": "http://127.0.0.1:9/hook", "secret_file": "hook.secret"}
    with pytest.raises(SettingsError) as info:
        load(folder, {"webhook": hook})
    message = str(info.value)
    assert f"alerts.webhook.secret_file: {path} {words}" in message
    assert "\n" not in message
    assert SECRET.decode() not in message


def test_a_missing_ca_file_is_named(folder):
    hook = {"url": "https://siem.example/", "secret_file": "webhook.secret", "ca_file": "no.pem"}
    with pytest.raises(SettingsError) as info:
        load(folder, {"webhook": hook})
    assert f"alerts.webhook.ca_file: {folder / 'no.pem'} does not exist" in str(info.value)
