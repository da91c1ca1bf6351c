"""One home for every benchmark number: each script's latest output, with when, where and what.

A benchmark script wraps its ``main`` in ``recorded(__file__)``: what it prints still goes to the
terminal, and when it finishes, its section of ``benchmarks/RESULTS.md`` is replaced by a header
(date, commit, machine, torch, threads, the command) and the output. README and writeup quote that
file, so a number there can always be traced to a run of a script.

    if __name__ == "__main__":
        with recorded(__file__):
            main()

A run that fails, or is run with ``--no-record``, leaves RESULTS.md alone.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import os
import re
import sys
from pathlib import Path
from typing import Iterator

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
PREAMBLE = """# Benchmark results

Each section is the latest output of one script in `benchmarks/`, written by the script itself
(`benchmarks/results.py`); README.md and writeup.md quote these numbers. Ratios are taken within one
run of a script (ours against the reference, in the same process), since the machine may be shared.
"""


class _Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def machine() -> str:
    """CPU model (or GPU name), cores, torch version: enough to tell two machines apart."""
    from cs336_basics.runtime import cpu_model

    parts = [f"{cpu_model()}, {os.cpu_count()} cores"]
    with contextlib.suppress(ImportError):
        import torch

        parts.append(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
        if torch.cuda.is_available():
            parts.append(torch.cuda.get_device_name())
    return "; ".join(parts)


def commit() -> str:
    """The commit the script ran from, with '+changes' when the tree had uncommitted edits."""
    from cs336_basics.runtime import git_commit

    return git_commit(RESULTS.parent.parent)


def write_section(script: str, command: str, output: str, path: Path | None = None) -> None:
    """Replace ``script``'s section of RESULTS.md (sections stay in alphabetical order)."""
    path = path or RESULTS
    text = path.read_text(encoding="utf-8") if path.is_file() else PREAMBLE
    preamble, *rest = re.split(r"^(?=## )", text, flags=re.M)
    sections = {re.match(r"## (\S+)", s).group(1): s for s in rest}
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections[script] = (f"## {script}\n\n{when}, commit {commit()}; {machine()}\n\n"
                        f"```\n$ {command}\n{output.rstrip()}\n```\n\n")
    body = preamble.rstrip() + "\n\n" + "".join(sections[name] for name in sorted(sections))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(body.rstrip() + "\n", encoding="utf-8")
    os.replace(tmp, path)


@contextlib.contextmanager
def recorded(script_file: str, enabled: bool = True) -> Iterator[None]:
    """Print as usual, and on success record the output as the script's section of RESULTS.md
    (not when ``enabled`` is false, e.g. in a script's own worker processes, or with --no-record)."""
    if "--no-record" in sys.argv or not enabled or {"-h", "--help"} & set(sys.argv):
        if "--no-record" in sys.argv:
            sys.argv.remove("--no-record")
        yield
        return
    script = Path(script_file).name
    command = "uv run python benchmarks/" + " ".join([script, *sys.argv[1:]])
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(_Tee(sys.stdout, captured)):
            yield
    except SystemExit as done:  # sys.exit(main()): record a success, let a failure through
        if done.code not in (0, None):
            raise
        _record(script, command, captured.getvalue())
        raise
    _record(script, command, captured.getvalue())


def _record(script: str, command: str, output: str) -> None:
    write_section(script, command, output)
    print(f"(recorded in {RESULTS})", file=sys.stderr)
