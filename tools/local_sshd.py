"""A private sshd on 127.0.0.1 with throwaway keys, for the remote-copy tests and benchmarks.

It needs root (sshd's privilege separation) and openssh-server. ``rsh`` is the ssh command line
(for zcp -e, rsync -e, or `tar | ssh`) that logs in to it as the current user without a prompt.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import time
from pathlib import Path

HOST = "127.0.0.1"


class SshdUnavailable(Exception):
    """This machine cannot run the private sshd (why, in one line)."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


class LocalSshd:
    """``with LocalSshd(folder) as sshd:`` a running sshd whose keys and config live in ``folder``."""

    def __init__(self, folder: Path, start_within: float = 15.0):
        self.folder = folder
        self.start_within = start_within
        self.rsh = ""
        self._server: subprocess.Popen | None = None

    def __enter__(self) -> LocalSshd:
        sshd = shutil.which("sshd", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
        client, keygen = shutil.which("ssh"), shutil.which("ssh-keygen")
        if os.geteuid() != 0:
            raise SshdUnavailable("needs root (sshd's privilege separation)")
        if sshd is None or client is None or keygen is None:
            raise SshdUnavailable("needs sshd, ssh and ssh-keygen (openssh-server, openssh-client)")
        folder = self.folder
        folder.mkdir(parents=True, exist_ok=True)
        for key in ("host_key", "user_key"):
            subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(folder / key)], check=True)
        shutil.copy(folder / "user_key.pub", folder / "authorized_keys")
        port = free_port()
        (folder / "sshd_config").write_text(
            f"Port {port}\nListenAddress {HOST}\nHostKey {folder / 'host_key'}\n"
            f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            f"PidFile {folder / 'sshd.pid'}\n"
        )
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd refuses to start without it
        with open(folder / "sshd.log", "w") as log:
            self._server = subprocess.Popen([sshd, "-D", "-e", "-f", str(folder / "sshd_config")], stderr=log)
        self.rsh = shlex.join([client, "-F", "/dev/null", "-p", str(port), "-i", str(folder / "user_key"),
                               "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                               "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
        try:
            self._wait_for_login()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_for_login(self) -> None:
        deadline = time.monotonic() + self.start_within
        while subprocess.run([*shlex.split(self.rsh), HOST, "true"], capture_output=True).returncode != 0:
            if self._server.poll() is not None or time.monotonic() > deadline:
                log = (self.folder / "sshd.log").read_text().strip()
                raise SshdUnavailable(f"sshd did not accept a login: {log or 'no message'}")
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.terminate()
            self._server.wait()
            self._server = None
