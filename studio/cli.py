"""`python -m studio` opens the studio in the browser; `python -m studio SUBCOMMAND` runs the
engine without it, for servers and GPUs.

Every subcommand prints human lines first and, where a script may want the result, one JSON
object last on stdout. Mistakes a user can make (a wrong path, a bad option, a damaged file) end
with one sentence on stderr and exit code 2, never a traceback.

The subcommands are in cli_training.py (ingest, train, evaluate, export) and cli_exploring.py
(generate, interpolate, project), each an `add_NAME(commands)` that adds its parser and the
`run_NAME(args)` that parser runs; what they share is in cli_common.py. Here are the studio's own
options, the parser that assembles them all, and the handling of user errors.
"""
from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import logging
import sys
from pathlib import Path

from .checkpoint import CheckpointError
from .cli_common import positive
from .cli_exploring import add_generate, add_interpolate, add_project
from .cli_training import add_evaluate, add_export, add_ingest, add_train
from .config import ConfigError
from .data import DatasetError
from .explore import SidecarError
from .packaged import WeightsUnavailable
from .run import RunError

USER_ERRORS = (ConfigError, DatasetError, CheckpointError, RunError, FileNotFoundError, NotADirectoryError,
               WeightsUnavailable, SidecarError)


# --------------------------------------------------------------------------------- studio
def add_studio(parser) -> None:
    """The studio's options, on the main parser: the studio is what runs without a COMMAND."""
    parser.add_argument("--workspace", type=Path, default=Path("."), metavar="DIR",
                        help="where datasets/, checkpoints/ and exports/ live (default: this folder)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to serve on (default 127.0.0.1, this computer only; any other needs "
                             "--auth or --insecure)")
    parser.add_argument("--port", type=positive(int), help="port to serve on (default: 7860 or the next free one)")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    access = parser.add_mutually_exclusive_group()
    access.add_argument("--auth", type=_credentials, metavar="USER:PASSWORD",
                        help="the user name and password the page asks for")
    access.add_argument("--auth-file", dest="auth", type=_credentials_file, metavar="FILE",
                        help="the same, read from a file holding USER:PASSWORD, which keeps the password out of "
                             "the shell's history and the list of processes")
    access.add_argument("--insecure", action="store_true",
                        help="serve another --host without a password: anyone who can reach it can use the studio")
    absent = argparse.SUPPRESS     # the studio's own defaults (UploadLimits in ui/dataset_tab.py) apply
    parser.add_argument("--max-upload-mb", type=positive(int), default=absent, metavar="MB",
                        help="the largest file the page takes (default 1024; a zip of a whole folder is one file)")
    parser.add_argument("--max-upload-files", type=positive(int), default=absent, metavar="N",
                        help="the most files one drop of paintings may hold (default 5000)")
    parser.add_argument("--max-upload-total-gb", type=positive(float), default=absent, metavar="GB",
                        help="the most one drop of paintings may hold in all (default 5)")
    parser.set_defaults(run=run_studio)   # a subcommand sets its own


def _credentials(text: str) -> tuple[str, str]:
    user, colon, password = text.partition(":")
    if not (user and colon and password):
        raise argparse.ArgumentTypeError("give it as USER:PASSWORD")   # without echoing what may be a password
    return user, password


def _credentials_file(text: str) -> tuple[str, str]:
    try:
        content = Path(text).read_text(encoding="utf-8")
    except OSError as error:
        raise argparse.ArgumentTypeError(f"cannot read {text}: {error.strerror or error}") from None
    return _credentials(content.rstrip("\r\n"))


def _this_computer_only(host: str) -> bool:
    """Whether `host` is a loopback address, which other computers cannot reach."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:             # any other name may stand for any address
        return False


def _exposure(host: str, password: bool) -> str:
    who = "anyone who can reach it and has the password" if password else "anyone who can reach it, with no password,"
    return (f"Serving on {host}, to other computers too: {who} can view this workspace's datasets, runs and "
            f"exports and start trainings.")


def run_studio(args) -> int:
    if not _this_computer_only(args.host):
        if not (args.auth or args.insecure):
            raise ConfigError(f"--host {args.host} lets other computers open the studio: add --auth USER:PASSWORD "
                              f"(or --auth-file FILE), or --insecure to serve it without a password")
        print(_exposure(args.host, password=bool(args.auth)), file=sys.stderr, flush=True)
    from .ui.app import launch     # gradio takes seconds to import; the subcommands never need it
    from .ui.dataset_tab import UploadLimits
    given = {field.name: getattr(args, field.name) for field in dataclasses.fields(UploadLimits)
             if hasattr(args, field.name)}
    try:
        return launch(args.workspace, args.host, args.port, open_browser=not args.no_browser, auth=args.auth,
                      uploads=UploadLimits(**given))
    except OSError as error:       # the port is taken, or the host is not an address of this machine
        print(f"error: {error}", file=sys.stderr)
        return 2


# ------------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m studio", description="GAN Art Studio. Without a COMMAND, opens the studio in your browser.")
    add_studio(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_ingest(commands)
    add_train(commands)
    add_generate(commands)
    add_export(commands)
    add_evaluate(commands)
    add_interpolate(commands)
    add_project(commands)
    return parser


class _StderrHandler(logging.Handler):
    """Looks up sys.stderr when it writes, so a replaced stderr (tests, redirection) is honoured."""

    def emit(self, record: logging.LogRecord) -> None:
        print(record.getMessage(), file=sys.stderr, flush=True)


def _show_studio_log() -> None:
    """The studio's own progress messages on stderr, without every library's INFO chatter."""
    log = logging.getLogger("studio")
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        log.addHandler(_StderrHandler())
        log.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    _show_studio_log()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
