"""strace proof: a file body goes to a pipe by splice; write() carries only headers and padding."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import need_tool
from stream_support import MiB, receive_bytes

SEND_ONE_FILE = """
import os, sys
from zcp.model import Entry
from zcp.stream import write_stream
path = sys.argv[1]
write_stream(1, [("big", Entry.from_stat(path, os.lstat(path)))])
"""
# pid syscall(fd, ...) = result
CALL = re.compile(r"^\d+\s+(\w+)\((.*)\)\s+=\s+(-?\d+)")


def test_body_goes_by_splice_and_headers_by_write(tmp_path):
    strace = need_tool("strace")
    size = 4 * MiB
    (tmp_path / "big").write_bytes(os.urandom(size))
    log = tmp_path / "strace.log"
    done = subprocess.run(
        [strace, "-f", "-o", str(log), "-e", "trace=write,splice,sendfile,copy_file_range",
         sys.executable, "-c", SEND_ONE_FILE, str(tmp_path / "big")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        check=True,
    )
    moved: dict[str, list[int]] = {}
    for line in log.read_text().splitlines():
        if (call := CALL.match(line)) is None:
            continue
        name, args, result = call.group(1), call.group(2).split(", "), int(call.group(3))
        out_fd = args[2] if name == "splice" else args[0]  # splice(in, off_in, out, ...)
        if out_fd == "1":
            moved.setdefault(name, []).append(result)

    assert sum(moved["splice"]) == size
    assert set(moved) == {"write", "splice"}  # no sendfile, no copy_file_range to the pipe
    header_bytes = sum(moved["write"])
    assert header_bytes < 4096 and len(moved["write"]) <= 4  # global header, entry headers, end marker
    assert header_bytes + size == len(done.stdout)

    receive_bytes(done.stdout, str(tmp_path / "copy"))  # the stream is valid and verified
    assert (tmp_path / "copy").read_bytes() == (tmp_path / "big").read_bytes()
