"""The ``actlab`` command (the console script and ``python -m actlab``): signal handlers first, then the CLI.

Importing the CLI (typer, rich) takes a tenth of a second. A Ctrl-C in it used to end actlab with Python's
KeyboardInterrupt traceback, a SIGTERM or SIGHUP with a silent death. So the first line holds the three
signals back (blocked: they wait, they are not lost) until actlab's handlers exist, a millisecond later;
from then on any of them is one line on stderr and the shell's exit code for it (128 + its number).
"""

import signal  # first: the window before the block is this import, half a millisecond
import sys  # built in, already imported

_STOPS = {signal.SIGINT, *(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))}
# Only where this module starts the program (the `actlab` console script, `python -m actlab`): a program that
# merely imports it keeps its signals (a blocked mask would also pass to every process it starts). POSIX;
# elsewhere the window is only this module's import.
_ENTRY = __name__ == "__main__" or sys.argv[0].replace("\\", "/").rsplit("/", 1)[-1] == "actlab"
_BLOCKS = _ENTRY and hasattr(signal, "pthread_sigmask")
if _BLOCKS:
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)


def main() -> None:
    """Run the ``actlab`` command line; a signal at any moment is one line and exit code 128 + its number."""
    from actlab import signals

    signals.install()
    try:
        if _BLOCKS:  # a signal that came meanwhile is delivered here, inside the try
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPS)
        from actlab.cli import main as cli_main

        try:
            cli_main()
        finally:  # the command ended (its output is whole, its exit code set): a signal now changes nothing
            signals.ignore_all()
    except KeyboardInterrupt as stop:  # before the CLI's own handling exists, or after it ended
        signals.ignore_all()
        sys.stderr.write(f"{signals.reason(stop)}: stopped before the command finished; run it again to finish it\n")
        # a KeyboardInterrupt that left code run by exec() of a string (dataclasses', in an import) makes
        # CPython kill itself with SIGINT at exit, even once caught: running such code to its end clears it
        exec("")  # noqa: S102
        sys.exit(signals.exit_code(stop))


if __name__ == "__main__":
    main()
