"""The CLI in a fresh interpreter, for tests/support/cli.py: `python cli_probe.py one ARGS...` runs one command
as the console script does and then prints whether ray or torch was ever imported; `python cli_probe.py many
JSON` runs several commands in the one interpreter and prints one JSON line: each command's exit code and
stderr lines, and the same two facts."""
import contextlib
import io
import json
import sys

from orchestrator.cli import main


def imported() -> dict:
    return {"ray": "ray" in sys.modules, "torch": "torch" in sys.modules}


if __name__ == "__main__":
    mode, rest = sys.argv[1], sys.argv[2:]
    if mode == "one":
        rc = main(rest)
        print("IMPORTED", imported()["ray"], imported()["torch"])
        sys.exit(rc)
    out = []
    for argv in json.loads(rest[0]):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = main(argv)
        out.append([rc, [line for line in err.getvalue().splitlines() if line.strip()]])
    print(json.dumps({"results": out, **imported()}))
