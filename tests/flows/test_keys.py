"""Where the action key comes from (flows/keys.py, the edge)."""

from __future__ import annotations

import stat

import pytest

from flows.keys import ACTION_KEY, SecretError, load_action_key, machine_key_path

ENV_KEY = ACTION_KEY.env


@pytest.fixture
def machine(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv(ENV_KEY, raising=False)
    return tmp_path / "config" / "concierge" / "action.key"


def test_a_first_use_creates_a_private_random_key_and_keeps_it(machine):
    key, where = load_action_key()
    assert machine_key_path() == machine and where == f"{machine} (created)"
    assert len(key) == 64 and machine.read_bytes().strip() == key
    assert stat.S_IMODE(machine.stat().st_mode) == 0o600
    assert load_action_key() == (key, str(machine))


def test_run_keeps_a_copy_with_its_state_so_a_deployment_keeps_its_key(machine, tmp_path):
    state = tmp_path / "state"
    key, _ = load_action_key(state)
    assert (state / "action.key").read_bytes().strip() == key
    machine.unlink()  # a new container: the machine's key is gone, the volume's is not
    assert load_action_key(state) == (key, str(state / "action.key"))
    assert load_action_key()[0] != key


def test_the_environment_wins_and_must_be_long_enough(machine, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_KEY, "  correct horse battery staple ")
    assert load_action_key(tmp_path / "state") == (b"correct horse battery staple", ENV_KEY)
    assert not machine.exists()
    monkeypatch.setenv(ENV_KEY, "short")
    with pytest.raises(SecretError, match="at least 16"):
        load_action_key()


def test_a_key_file_that_holds_no_key_is_an_error(machine, tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "action.key").write_text("\n")
    with pytest.raises(SecretError, match="holds no action key"):
        load_action_key(tmp_path / "state")


def test_without_a_writable_home_replay_signs_with_the_public_key(tmp_path, monkeypatch):
    from operators.model.action_ids import PUBLIC_KEY

    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(blocker))
    monkeypatch.delenv(ENV_KEY, raising=False)
    assert load_action_key() == (PUBLIC_KEY, "the public key")
    key, where = load_action_key(tmp_path / "state")
    assert where.endswith("action.key (created)") and key != PUBLIC_KEY
