"""Servers the end-to-end tests start on this machine as child processes (dockerd, sshd)."""

from __future__ import annotations

import subprocess


def stop_daemon(process: subprocess.Popen[bytes], grace: float) -> None:
    """Ask ``process`` to stop (SIGTERM) and wait; killed if it has not exited after ``grace``
    seconds. Nothing is done to a process that has already exited."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=grace)
