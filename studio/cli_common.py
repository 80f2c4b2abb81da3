"""What the commands share: the argparse type of an option that must be greater than zero, and
progress lines on stderr, which keep stdout for the human lines and the JSON object each command
ends with.
"""
from __future__ import annotations

import argparse
import sys
import time


def positive(kind):
    """An argparse type: a `kind` (int, float) greater than zero."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} must be greater than zero")
        return value
    return parse


class StderrLine:
    """A progress line on stderr. On a terminal it is rewritten in place, at most every
    `terminal_seconds`; redirected to a log it is a whole line every 10 s, so that a long job
    does not flood the log. Final lines are always written."""

    def __init__(self, terminal_seconds: float):
        self.interactive = sys.stderr.isatty()
        self.interval = terminal_seconds if self.interactive else 10.0
        self.last_print = -float("inf")
        self.width = 0          # the longest line so far: padding to it erases a longer one's tail
        self.open = False       # a terminal line still waits for its newline

    def show(self, line: str, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last_print < self.interval:
            return
        self.last_print = now
        if not self.interactive:
            print(line, file=sys.stderr, flush=True)
            return
        self.width = max(self.width, len(line))
        print("\r" + line.ljust(self.width), end="", file=sys.stderr, flush=True)
        self.open = True
        if final:
            self.finish()

    def finish(self) -> None:
        """End the terminal line, so that what is printed next starts on a line of its own."""
        if self.open:
            print(file=sys.stderr, flush=True)
            self.open = False


class CountProgress:
    """"done/total what" for ingest and evaluate, as a StderrLine."""

    def __init__(self):
        self.line = StderrLine(terminal_seconds=0.1)

    def __call__(self, done: int, total: int, what: str) -> None:
        self.line.show(f"  {done}/{total} {what[-50:]}", final=done == total)
