"""The CLI's admin commands build the database and the operator use cases, nothing else:
no writer thread, no line locks, no GET pool, no webhook worker (`bootstrap.build` makes
those for a server)."""

from __future__ import annotations

import dataclasses
import threading

import pytest
from typer.testing import CliRunner

from contactcard import bootstrap, cli
from contactcard.device import DeviceScript
from contactcard.settings import Settings

LINE = "+15550000001"


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate()}


def test_an_admin_session_runs_every_kind_of_admin_command_on_no_thread_of_its_own(tmp_path):
    before = _threads()
    session = bootstrap.admin_session(Settings(data_dir=tmp_path))
    try:
        assert [f.name for f in dataclasses.fields(session)] == ["database", "admin"]
        admin = session.admin
        partner = admin.create_partner("Acme")
        admin.issue_key(partner.id)
        admin.add_line(partner.id, LINE)
        assert admin.script_device(LINE, DeviceScript(fail_next=1)).script.fail_next == 1
        assert admin.device_view(LINE).applies == 0
        assert admin.list_deliveries() == [] and admin.counts().lines == 1
        admin.remove_line(LINE)
        started = _threads() - before
        assert not {name for name in started if name.startswith("contactcard-")}, started
    finally:
        session.close()


def test_the_cli_admin_commands_never_build_the_server(tmp_path, monkeypatch):
    def no_server(*args, **kwargs):
        raise AssertionError("an admin command built the whole server")

    monkeypatch.setattr(bootstrap, "build", no_server)
    monkeypatch.setenv("CONTACTCARD_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("CONTACTCARD_DATABASE_URL", raising=False)
    built: list[object] = []
    real_session = bootstrap.admin_session
    monkeypatch.setattr(bootstrap, "admin_session", lambda settings: built.append(settings) or real_session(settings))
    runner = CliRunner()
    created = runner.invoke(cli.app, ["admin", "partner", "create", "Acme"])
    assert created.exit_code == 0, created.output
    listed = runner.invoke(cli.app, ["admin", "partner", "list"])
    assert "Acme" in listed.output and len(built) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["admin", "line", "remove", LINE], f"error: no line {LINE}"),
        (["admin", "partner", "create", " "], "error: a partner needs a name"),
    ],
)
def test_a_refused_admin_command_prints_the_reason_and_exits_1(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.setenv("CONTACTCARD_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("CONTACTCARD_DATABASE_URL", raising=False)
    monkeypatch.setattr("sys.argv", ["contactcard", *args])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 1
    assert message in capsys.readouterr().out
