"""The response names are declared once (supervisor/wire/control.py) and used everywhere."""

from __future__ import annotations

from typing import get_args

from supervisor.wire.control import RESPONSES, Response, TriggerResponse


def test_every_response_has_its_help_line():
    assert set(RESPONSES) == set(get_args(Response))


def test_a_trigger_may_alert_or_carry_out_a_response_but_not_an_undo():
    allowed = set(get_args(TriggerResponse))
    assert allowed - {"alert"} <= set(get_args(Response))
    assert not allowed & {"thaw", "restore-network"}


def test_the_cli_has_one_command_per_response():
    from supervisor.cli import build_parser

    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert set(get_args(Response)) <= set(choices)
