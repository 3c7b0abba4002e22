"""%%carbon's options, budgets, redaction and the budget stop, without a kernel."""

import os
import signal
import socket
import threading
import time

import pytest
from IPython.core.error import UsageError

from carbon_magic.kernel.budget import parse_budget
from carbon_magic.kernel.cell_options import parse_options
from carbon_magic.kernel.cell_runner import first_line
from carbon_magic.kernel.interrupt import BudgetExceeded, BudgetStop
from carbon_magic.redact import redact_secrets


@pytest.mark.parametrize(
    "line, message",
    [
        ("--name 'unclosed", "no closing quotation"),
        ("--budget -5g", "finite and above 0"),
        ("-b -5g", "finite and above 0"),
        ("--budget 1e400kWh", "finite and above 0"),
        ("--budget 0g", "finite and above 0"),
        ("--budget 5apples", "µg, mg, g, kg, Mg, t"),
        ("--on-exceed explode", "invalid choice"),
        ("--budget", "expected one argument"),
    ],
)
def test_bad_cell_options_are_one_line_usage_errors(line, message):
    with pytest.raises(UsageError, match=message) as raised:
        parse_options(line)
    assert "Traceback" not in str(raised.value)


def test_good_cell_options():
    options = parse_options("--name 'my cell' -b 0.2kWh --on-exceed stop -q")
    assert options.name == "my cell" and options.budget.kwh == 0.2
    assert options.on_exceed == "stop" and options.quiet
    assert parse_options("--budget=5g -n x").budget.grams == 5.0
    assert parse_budget("+2kWh").kwh == 2.0


@pytest.mark.parametrize(
    "text, grams, kwh",
    [
        ("1mWh", None, 1e-6),
        ("1MWh", None, 1e3),
        ("5mg", 5e-3, None),
        ("5Mg", 5e6, None),
        ("2 µWh", None, 2e-9),
        ("3µg", 3e-6, None),
        ("2KWH", None, 2.0),  # one unit in any case: kWh
        ("150wh", None, 0.15),
        ("1E3J", None, 1e3 / 3.6e6),
    ],
)
def test_budget_units_keep_their_case(text, grams, kwh):
    budget = parse_budget(text)
    assert budget.grams == pytest.approx(grams) if grams else budget.grams is None
    assert budget.kwh == pytest.approx(kwh) if kwh else budget.kwh is None


@pytest.mark.parametrize(
    "line, choices",
    [
        ("--budget 1mwh", "mWh (milliwatt-hours) or MWh (megawatt-hours)"),
        ("--budget 5MG", "mg (milligrams) or Mg (megagrams)"),
    ],
)
def test_ambiguous_budget_units_are_usage_errors_naming_the_choices(line, choices):
    with pytest.raises(UsageError, match=r"ambiguous budget unit") as raised:
        parse_options(line)
    assert choices in str(raised.value) and "\n" not in str(raised.value)


def test_redaction_replaces_only_secret_values():
    assert redact_secrets("%carbon config electricitymaps_token=t mode=machine  # t t") == (
        "%carbon config electricitymaps_token=*** mode=machine  # t t"
    )
    assert redact_secrets('configure(electricitymaps_token="a b", pue=1.2)') == (
        'configure(electricitymaps_token="***", pue=1.2)'
    )
    assert redact_secrets("%config CarbonMagics.electricitymaps_token = 'xyz'") == (
        "%config CarbonMagics.electricitymaps_token = '***'"
    )
    assert redact_secrets("%env CARBON_MAGIC_ELECTRICITYMAPS_TOKEN=s3") == (
        "%env CARBON_MAGIC_ELECTRICITYMAPS_TOKEN=***"
    )
    assert redact_secrets('os.environ["ELECTRICITYMAPS_API_TOKEN"] = "s"') == (
        'os.environ["ELECTRICITYMAPS_API_TOKEN"] = "***"'
    )
    plain = "total = sum(t for t in items)  # electricitymaps"
    assert redact_secrets(plain) == plain
    assert first_line("\n%carbon config electricitymaps_token=abc\n") == (
        "%carbon config electricitymaps_token=***"
    )


def _fire_after(stop, seconds):
    timer = threading.Timer(seconds, stop.fire)
    timer.start()
    return timer


@pytest.mark.parametrize("kind", ["sleep", "socket"])
def test_budget_stop_interrupts_blocking_calls(kind):
    stop = BudgetStop()
    stop.arm()
    assert stop.method == "signal"
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    started = time.monotonic()
    _fire_after(stop, 0.2)
    with pytest.raises(BudgetExceeded):
        try:
            if kind == "sleep":
                time.sleep(10)
            else:
                with socket.create_connection(server.getsockname()) as client:
                    client.settimeout(10)
                    client.recv(1)
        finally:
            stop.disarm()
            server.close()
    assert time.monotonic() - started < 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_late_stop_is_absorbed_and_other_interrupts_pass_through():
    stop = BudgetStop()
    stop.arm()
    stop.disarm()
    assert stop.fire() is False  # after the cell: nothing sent
    stop = BudgetStop()
    stop.arm()
    with pytest.raises(KeyboardInterrupt) as raised:
        try:
            os.kill(os.getpid(), signal.SIGINT)  # a user's interrupt, not the budget's
            time.sleep(5)
        finally:
            stop.disarm()
    assert not isinstance(raised.value, BudgetExceeded)


def test_a_stop_racing_the_end_of_the_code_never_lands_after_disarm():
    for attempt in range(40):
        stop = BudgetStop()
        timer = None
        try:
            stop.arm()
            timer = _fire_after(stop, 0.001 * (attempt % 4))
            try:
                time.sleep(0.001 * (attempt % 3))
            except BudgetExceeded:
                pass
            stop.disarm()
        except BudgetExceeded:  # landed between the code and disarm
            stop.disarm()
        if timer is not None:
            timer.join()
        time.sleep(0.005)  # nothing arrives after disarm
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_secret_values_are_masked_as_whole_words_only():
    from carbon_magic.redact import mask_values

    text = "Electricity Maps FR: could not be reached (GET /v3?auth-token=t, token t)"
    assert mask_values(text, ["t"]) == (
        "Electricity Maps FR: could not be reached (GET /v3?auth-token=***, token ***)"
    )
    assert mask_values("key abc123def in abc123defg", ["abc123def", ""]) == (
        "key *** in abc123defg"
    )
