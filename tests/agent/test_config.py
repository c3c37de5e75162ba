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
