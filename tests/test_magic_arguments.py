"""%%carbon and %carbon parse with IPython's magic_arguments, from one registry."""

import pytest
from IPython.core.error import UsageError

from carbon_magic.kernel.argparsing import HelpShown, parse_words
from carbon_magic.kernel.commands import SUBCOMMANDS
from carbon_magic.kernel.magics import CarbonMagics
from carbon_magic.reports import export

from .kernels import Kernel


def parse(line_words):
    return parse_words(CarbonMagics.carbon_line.parser, line_words, "%carbon")


def test_every_registered_subcommand_is_in_the_help_and_parses_to_its_handler():
    help_text = CarbonMagics.carbon_line.__doc__
    needed = {"export": ["out.csv"], "auto": ["on"]}
    for name, spec in SUBCOMMANDS.items():
        assert f"    {name} " in help_text, name
        assert parse([name, *needed.get(name, [])]).handler is spec.handler
    assert parse(["auto", "OFF"]).state == "off"
    assert "Settings (%carbon config key=value): mode, interval" in help_text


def test_export_formats_come_from_the_format_registry():
    options = parse(["export", "out.csv"])
    assert options.format == export.DEFAULT_FORMAT == export.FORMATS[0]
    with pytest.raises(UsageError) as raised:
        parse(["export", "out.csv", "--format", "xml"])
    message = str(raised.value)
    assert message.startswith("%carbon export: argument --format: invalid choice: 'xml'")
    for name in export.FORMATS:
        assert repr(name) in message
    assert set(export.FORMATS) == set(export.EXPORT_FORMATS) and len(export.FORMATS) >= 3
    with pytest.raises(ValueError, match="valid formats: codecarbon, csv, json"):
        export.export_format("xml")
    assert export.export_format(" JSON ").default_file_name == "carbon_cells.json"


@pytest.mark.parametrize(
    "words, expected",
    [
        (["auto", "maybe"], "%carbon auto: argument on|off: invalid choice: 'maybe'"),
        (
            ["report", "--top", "x"],
            "%carbon report: argument --top: must be a positive whole number (got 'x')",
        ),
        (["report", "--top", "0"], "%carbon report: argument --top: must be a positive whole"),
        (["report", "--since", "soon"], "%carbon report: argument --since: cannot read the time"),
        (["export"], "%carbon export: the following arguments are required: PATH"),
        (["status", "extra"], "%carbon status: unrecognized arguments: extra"),
        (["report", "--topp", "3"], "%carbon report: unrecognized arguments: --topp 3"),
    ],
)
def test_bad_subcommand_input_is_a_usage_error_naming_what_is_valid(words, expected):
    with pytest.raises(UsageError) as raised:
        parse(words)
    assert expected in str(raised.value)


def test_help_of_a_subcommand_is_printed_not_an_exit(capsys):
    with pytest.raises(HelpShown):
        parse(["report", "--help"])
    shown = capsys.readouterr().out
    assert "%carbon report" in shown and "--top N" in shown and "--since WHEN" in shown


def test_cell_magic_help_comes_from_its_declared_options():
    text = CarbonMagics.carbon.__doc__
    assert text.lstrip(":\n ").startswith("%%carbon [--name NAME] [--budget LIMIT]")
    for option in ("--on-exceed", "--predict", "--quiet", "mg, g, kg, Mg, t"):
        assert option in text


@pytest.mark.kernel
def test_help_and_bad_format_in_a_real_kernel(tmp_path):
    kernel = Kernel(str(tmp_path / "ledger.sqlite3"))
    try:
        kernel.execute("%load_ext carbon_magic")
        shown = kernel.execute("%carbon export --help")
        assert shown.reply["content"]["status"] == "ok" and shown.error is None
        assert "--format" in shown.text and "codecarbon" in shown.text
        bad = kernel.execute(f"%carbon export {tmp_path / 'x.csv'} --format xml")
        lines = [line for line in bad.text.splitlines() if line.startswith("UsageError: ")]
        assert len(lines) == 1 and "choose from 'codecarbon', 'csv', 'json'" in lines[0]
        assert not (tmp_path / "x.csv").exists()
        assert kernel.execute("%carbon auto OFF").error is None
    finally:
        kernel.shutdown()


def test_a_unit_given_apart_from_its_number_is_named_with_the_fix():
    from carbon_magic.kernel.cell_options import parse_options

    with pytest.raises(UsageError) as raised:
        parse_options("--budget 5 grams")
    assert str(raised.value) == "%%carbon: attach the unit to the number: --budget 5g"
    with pytest.raises(UsageError, match="attach the unit to the number: --budget 2kWh"):
        parse_options("--name fit --budget 2 kWh")
    # Other strays are still named as such.
    with pytest.raises(UsageError, match="unrecognized arguments: extra"):
        parse_options("--name fit extra")


def test_the_cell_magic_and_its_line_parser_share_one_option_declaration():
    from carbon_magic.kernel.cell_options import CELL_ARGUMENTS, cell_parser

    usage = cell_parser().format_usage()
    assert usage == CarbonMagics.carbon.parser.format_usage()
    assert usage.count("[--") == len(CELL_ARGUMENTS) == 5


def _options_of(parser, command):
    """{option string: (help, type, choices, default)} of ``command``'s subparser."""
    import argparse

    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[
        command
    ]
    return {
        flag: (action.help, action.type, action.choices, action.default)
        for action in sub._actions
        for flag in (action.option_strings or [action.dest])
    }


@pytest.mark.parametrize(
    "command, flags",
    [("report", ["--top", "--since"]), ("export", ["path", "--format", "--force"])],
)
def test_the_magic_and_the_command_line_share_their_common_options(command, flags):
    from carbon_magic import cli

    magic = _options_of(CarbonMagics.carbon_line.parser, command)
    line = _options_of(cli.build_parser(), command)
    for flag in flags:
        assert magic[flag] == line[flag], flag
    # One check of the value: the same refusal in a notebook and on a command line.
    with pytest.raises(UsageError, match=r"must be a positive whole number \(got '0'\)"):
        parse(["report", "--top", "0"])
