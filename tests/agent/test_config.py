"""A bad config is one line naming the file, the key and the value — before anything runs."""

from __future__ import annotations

import pytest

from agent.config import ConfigError, load_config
from checks.registry import builtin_registry


def load(tmp_path, text):
    path = tmp_path / "agent.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, builtin_registry())


def test_defaults_from_an_empty_file(tmp_path):
    config = load(tmp_path, "")
    assert config.tpm.tcti == "device:/dev/tpmrm0"
    assert config.checks.disabled == ()


def test_thresholds_have_one_default_the_checks_own(tmp_path):
    # An unset alias adds no override of its own: the check's declared default applies.
    assert load(tmp_path, "").check_overrides() == {}
    config = load(tmp_path, "checks: {parameters: {backup.rpo: {default_rpo_minutes: 30}}}")
    assert config.check_overrides() == {"backup.rpo": {"default_rpo_minutes": 30}}


def test_full_config(tmp_path):
    config = load(
        tmp_path,
        """
site: dc1
tpm: {tcti: "swtpm:host=127.0.0.1,port=2321"}
checks:
  disabled: [tpm.ek_certificate]
  parameters:
    tpm.pcr_bank: {accepted_banks: [sm3_256]}
""",
    )
    assert config.site == "dc1"
    assert config.checks.parameters["tpm.pcr_bank"]["accepted_banks"] == ["sm3_256"]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("tpm: {tctii: x}", "unknown key tpm.tctii (value: 'x')"),
        ("colour: red", "unknown key colour (value: 'red')"),
        ("tpm: {tcti: 'usb:/dev/x'}", "tpm.tcti: must start with device:"),
        ("tpm: [1, 2]", "tpm:"),
        ("checks: {disabled: [tpm.nonsense]}", "unknown check id 'tpm.nonsense'"),
        ("checks: {parameters: {tpm.pcr_bank: {banks: [x]}}}", "no parameter 'banks'"),
        ("checks: {parameters: {tpm.pcr_bank: {accepted_banks: sha256}}}", "must be list"),
        ("- just\n- a list", "top level must be a mapping"),
        ("tpm: {tcti: [unclosed", "invalid YAML at line 2"),
        (
            "logs: {min_retention_days: 200}\n"
            "checks: {parameters: {log.retention: {min_retention_days: 365}}}",
            "logs.min_retention_days and checks.parameters.log.retention.min_retention_days",
        ),
        (
            "checks: {parameters: {backup.offsite: {default_rpo_minutes: 30}}}",
            "shared with backup.rpo: set it there",
        ),
    ],
)
def test_bad_config_names_file_key_and_value(tmp_path, text, words):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    message = str(info.value)
    assert message.startswith(str(tmp_path / "agent.yaml") + ": ")
    assert words in message
    assert "\n" not in message


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml", builtin_registry())


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path, builtin_registry())


@pytest.fixture
def password_file(tmp_path):
    path = tmp_path / "restic.pass"
    path.write_text("correct horse\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def test_backup_sources_become_typed_sources(tmp_path, password_file):
    config = load(
        tmp_path,
        f"""
site: dc1
backups:
  - {{name: his-db-restic, kind: restic, repository: /srv/restic, password_file: {password_file},
     rpo_minutes: 15, site: dc2}}
  - {{name: his-db-borg, kind: borg, repository: /srv/borg, passphrase_file: {password_file},
     site: dc2}}
  - {{name: his-db-wal, kind: postgres, dsn: "postgresql://medsec@127.0.0.1:5432/postgres",
     site: dc1}}
  - {{name: pacs-export, kind: path, glob: "/backup/pacs/*.tar", rpo_minutes: 60, site: dc2}}
encryption: {{required_mounts: [/, /var/lib/postgresql], min_strength: sm4}}
logs: {{min_retention_days: 200, central_servers: [198.18.4.50]}}
""",
    )
    sources = [b.source() for b in config.backups]
    assert [s.kind for s in sources] == ["restic", "borg", "postgres", "path"]
    assert sources[1].password_file == str(password_file)  # borg's passphrase file
    assert sources[3].rpo_minutes == 60
    overrides = config.check_overrides()
    assert overrides["disk.encrypted_mounts"] == {"required_mounts": ["/", "/var/lib/postgresql"]}
    assert overrides["disk.cipher_strength"] == {"min_strength": "sm4"}
    assert overrides["log.retention"] == {
        "min_retention_days": 200,
        "central_log_servers": ["198.18.4.50"],
    }


@pytest.mark.parametrize(
    ("backup", "words"),
    [
        ("{name: x, kind: tape, repository: /r}", "backups[0].kind: Invalid enum value 'tape'"),
        (
            "{name: x, kind: restic, repository: /r, password_file: /etc/medsec/absent.pass}",
            "backups[0].password_file: /etc/medsec/absent.pass does not exist",
        ),
        (
            "{name: x, kind: restic, repository: /r, password_file: PW, rpo_minutes: 0}",
            "backups[0].rpo_minutes: must be between 1 and 525600",
        ),
        (
            "{name: x, kind: restic, repository: /r, password_file: PW, rpo_minutes: soon}",
            "backups[0].rpo_minutes: Expected `int | null`, got `str`",
        ),
        ("{name: x, kind: path}", "backups[0].glob: a path source needs glob"),
        ("{name: x, kind: path, glob: /b/*, dsn: 'host=h'}", "backups[0].dsn: not used by a path"),
    ],
)
def test_bad_backup_source_is_one_line(tmp_path, password_file, backup, words):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, f"backups:\n  - {backup.replace('PW', str(password_file))}\n")
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def test_a_password_in_the_dsn_is_refused_and_never_echoed(tmp_path):
    with pytest.raises(ConfigError) as info:
        load(
            tmp_path,
            "backups:\n  - {name: wal, kind: postgres,"
            " dsn: 'postgresql://medsec:s3cret@127.0.0.1/postgres'}\n",
        )
    assert "backups[0].dsn: must not contain a password" in str(info.value)
    assert "s3cret" not in str(info.value)


def test_backup_names_are_unique(tmp_path):
    with pytest.raises(ConfigError, match="the name 'a' is used twice"):
        load(
            tmp_path,
            "backups:\n  - {name: a, kind: path, glob: /b/*}\n"
            "  - {name: a, kind: path, glob: /c/*}\n",
        )


def test_only_selects_checks_by_pattern(tmp_path):
    config = load(tmp_path, "checks: {only: ['tpm.*', host.secure_boot], disabled: [tpm.lockout]}")
    assert config.checks.selected(builtin_registry().ids()) == [
        "host.secure_boot",
        "tpm.ek_certificate",
        "tpm.pcr_bank",
        "tpm.present",
    ]


def test_only_pattern_that_matches_nothing_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"checks\.only: 'tmp\.\*' matches no check"):
        load(tmp_path, "checks: {only: ['tmp.*']}")
