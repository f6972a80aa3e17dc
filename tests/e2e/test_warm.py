"""The warm start (``SHIPYARD_WARM=1``): commands handed to a resident server answer exactly as
they do in their own process: output, exit status, working directory, environment, standard
input, signals; a killed client takes its command with it; a server older than the code on disk
steps aside; an idle one exits. Real processes: the installed ``shipyard`` command, its server,
a project written by ``shipyard init``."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import shipyard
from shipyard.waiting import wait_until
from shipyard.warm._client import STARTED
from tests.example_app import EXAMPLE, git

SHIPYARD = str(Path(sys.executable).with_name("shipyard"))
DEADLINE = 60.0  # s for a server to come up, or a process to end, on a busy machine


@dataclass
class Warm:
    """A project, and the environment that sends its commands to a server of the test's own."""

    project: Path
    sockets: Path
    started: list[subprocess.Popen[str]] = field(default_factory=list)  # ended at teardown

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
        return {**env, "SHIPYARD_WARM": "1", "SHIPYARD_WARM_DIR": str(self.sockets), **extra}

    def run(
        self, *argv: str, warm: bool = True, cwd: Path | None = None, **kwargs: object
    ) -> subprocess.CompletedProcess[str]:
        env = self.env(SHIPYARD_WARM="1" if warm else "0")
        env.update(kwargs.pop("env", {}))  # type: ignore[call-overload]
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            [SHIPYARD, *argv],
            cwd=cwd or self.project,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            **kwargs,
        )

    def socket(self) -> Path | None:
        found = sorted(self.sockets.glob("warm-*.sock"))
        return found[0] if found else None

    def server_pid(self, sock: Path | None = None) -> int | None:
        """The pid of the server that serves (from its lock file), once its socket is up."""
        sock = sock or self.socket()
        if sock is None or not sock.exists():
            return None
        with contextlib.suppress(OSError, ValueError):
            return int(Path(f"{sock}.lock").read_text().strip())
        return None

    def served(self, sock: Path | None = None) -> list[int]:
        """The pids of the commands the current server forked, from its log."""
        sock = sock or self.socket()
        if sock is None or not Path(f"{sock}.log").exists():
            return []
        lines = Path(f"{sock}.log").read_text().splitlines()
        return [int(line.split()[-1]) for line in lines if " command pid " in line]

    def ended(self, pid: int) -> str | None:
        """How the server saw command ``pid`` end (``exit N``, ``signal NAME``), from its log."""
        sock = self.socket()
        if sock is None or not Path(f"{sock}.log").exists():
            return None
        for line in Path(f"{sock}.log").read_text().splitlines():
            if f" pid {pid} ended: " in line:
                return line.split(" ended: ", 1)[1]
        return None

    def serving(self) -> int:
        """Start a server (a first command does) and wait for it to answer."""
        self.run("--version")
        return until(self.server_pid, "a warm server came up")


def at_terminal(warm: Warm, *argv: str, **env: str) -> tuple[int, str]:
    """``shipyard ARGV`` with its standard streams on a pseudo-terminal, as an operator types it
    (no SHIPYARD_WARM, no CI unless given): its exit status and what the terminal showed."""
    environ = {k: v for k, v in warm.env().items() if k not in ("SHIPYARD_WARM", "CI")}
    master, slave = pty.openpty()
    try:
        process = subprocess.Popen(
            [SHIPYARD, *argv],
            cwd=warm.project,
            env={**environ, **env},
            stdin=slave,
            stdout=slave,
            stderr=slave,
            preexec_fn=_controlling_terminal,  # noqa: PLW1509 — the test's own child
        )
    finally:
        os.close(slave)
    shown = b""
    end = time.monotonic() + DEADLINE
    try:
        while time.monotonic() < end:  # until every holder of the terminal has closed it
            if not select.select([master], [], [], 0.5)[0]:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: no process holds the terminal any more
                break
            if not chunk:
                break
            shown += chunk
        return process.wait(timeout=DEADLINE), shown.decode().replace("\r\n", "\n")
    finally:
        os.close(master)


def _controlling_terminal() -> None:
    """In the child: a session of its own whose controlling terminal is its stdin (the
    pseudo-terminal), with the child in its foreground, as a shell runs a command."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def until(probe, what: str, deadline: float = DEADLINE):
    """``probe``'s first true value (``shipyard.waiting``'s loop), else a failure naming ``what``."""
    value = wait_until(probe, timeout=deadline, interval=0.05)
    if not value:
        raise AssertionError(f"not within {deadline:.0f} s: {what}")
    return value


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):  # a zombie child of ours has ended
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


@pytest.fixture
def warm() -> Iterator[Warm]:
    work = Path(tempfile.mkdtemp(prefix="shipyard-warm-"))
    sockets = Path(tempfile.mkdtemp(prefix="sw", dir="/tmp"))  # a socket path stays short
    project = work / "app"
    project.mkdir()
    shutil.copy(EXAMPLE / "go.mod", project / "go.mod")
    git(project, "init", "-q")
    subprocess.run([SHIPYARD, "init"], cwd=project, check=True, capture_output=True)
    (project / ".env.development").write_text("POSTGRES_PASSWORD=warm-test-password\n")
    (project / ".env.development").chmod(0o600)
    setup = Warm(project, sockets)
    try:
        yield setup
    finally:
        for process in setup.started:  # a test that failed midway leaves none running
            if process.poll() is None:
                process.kill()
                process.wait()
            _close(process)
        for lock in sockets.glob("*.lock"):
            with contextlib.suppress(OSError, ValueError):
                pid = int(lock.read_text().strip())
                os.kill(pid, signal.SIGTERM)
                until(lambda pid=pid: not alive(pid), f"warm server {pid} ended")
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(sockets, ignore_errors=True)


@pytest.mark.parametrize(
    "argv",
    [
        ["--version"],
        ["check", "nosuchenv"],  # invalid config: exit 3, the file and line on stderr
        ["check", "development", "--json"],
        ["no-such-command"],  # usage: exit 2
        ["deploy", "--help"],
    ],
    ids=["version", "bad-environment", "check-json", "usage", "help"],
)
def test_a_command_answers_through_the_server_as_in_its_own_process(
    warm: Warm, argv: list[str]
) -> None:
    server = warm.serving()
    cold = warm.run(*argv, warm=False)
    before = warm.served()
    hot = warm.run(*argv)
    assert (hot.returncode, hot.stdout, hot.stderr) == (cold.returncode, cold.stdout, cold.stderr)
    assert warm.server_pid() == server
    assert len(warm.served()) == len(before) + 1  # the server ran it, not the client


def test_the_command_takes_the_clients_directory_environment_and_input(warm: Warm) -> None:
    warm.serving()
    elsewhere = warm.project / "sub"
    elsewhere.mkdir()
    config = {"SHIPYARD_CONFIG": str(warm.project / "shipyard.yml")}
    # Found from another directory only through the environment's SHIPYARD_CONFIG.
    found = warm.run("check", "development", "--json", cwd=elsewhere, env=config)
    missing = warm.run("check", "development", cwd=elsewhere)
    at_home = warm.run("check", "development", "--json")
    assert (found.returncode, found.stdout) == (at_home.returncode, at_home.stdout)
    assert f"{elsewhere}/shipyard.yml: file not found" in missing.stderr
    assert "file not found" not in found.stdout + found.stderr
    # The confirmation reads the client's standard input and prompts on its stderr.
    before = warm.served()
    refused = warm.run("destroy", "development", input="x\nn\n")
    assert refused.returncode == 2
    assert "development? [y/N]" in refused.stderr
    assert "Error: invalid input" in refused.stderr  # it read "x", then "n"
    assert len(warm.served()) == len(before) + 1


def _prompting(
    warm: Warm, *, hot: bool, ignoring: tuple[int, ...] = (), **popen: Any
) -> subprocess.Popen[str]:
    """``destroy`` waiting at its confirmation, on a pipe the test holds open. It starts with
    SIGINT and SIGQUIT at their defaults, as a shell starts a command in the foreground: a test
    run started in the background by a shell without job control inherits them ignored. The
    signals in ``ignoring`` it starts with ignored, as under ``nohup``."""

    def dispositions() -> None:
        for interrupt in (signal.SIGINT, signal.SIGQUIT):
            signal.signal(interrupt, signal.SIG_DFL)
        for ignored in ignoring:
            signal.signal(ignored, signal.SIG_IGN)

    process = subprocess.Popen(
        [SHIPYARD, "destroy", "development"],
        cwd=warm.project,
        env=warm.env(SHIPYARD_WARM="1" if hot else "0"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=dispositions,  # noqa: PLW1509 — the test's own child
        **popen,
    )
    warm.started.append(process)
    assert process.stderr is not None
    os.set_blocking(process.stderr.fileno(), False)
    seen = ""

    def prompted() -> bool:
        nonlocal seen
        with contextlib.suppress(TypeError, BlockingIOError):
            seen += process.stderr.read() or ""  # type: ignore[union-attr]
        return "[y/N]" in seen

    until(prompted, "destroy asked for confirmation")
    return process


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_the_client_reaches_the_command(warm: Warm, signum: int) -> None:
    warm.serving()
    cold = _prompting(warm, hot=False)
    cold.send_signal(signum)
    cold_code = cold.wait(timeout=DEADLINE)
    before = warm.served()
    hot = _prompting(warm, hot=True)
    command = until(lambda: [p for p in warm.served() if p not in before], "the command's pid")[0]
    assert alive(command)
    hot.send_signal(signum)
    # With stdin still open: SIGINT interrupts the prompt ("aborted", exit 2); SIGTERM ends it (-15).
    assert hot.wait(timeout=DEADLINE) == cold_code
    until(lambda: not alive(command), "the command ended")
    expected = "exit 2" if signum == signal.SIGINT else "signal SIGTERM"  # not the client's loss
    assert until(lambda: warm.ended(command), "the server saw it end") == expected
    for process in (cold, hot):
        _close(process)


def test_a_killed_client_takes_its_command_with_it(warm: Warm) -> None:
    warm.serving()
    before = warm.served()
    hot = _prompting(warm, hot=True)
    command = until(lambda: [p for p in warm.served() if p not in before], "the command's pid")[0]
    hot.kill()
    hot.wait(timeout=DEADLINE)
    until(lambda: not alive(command), "the command ended with its client")
    _close(hot)


def _close(process: subprocess.Popen[str]) -> None:
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def test_a_server_older_than_the_code_on_disk_steps_aside(warm: Warm) -> None:
    server = warm.serving()
    marker = Path(shipyard.__file__).with_name("py.typed")  # part of what a server compares
    stat = marker.stat()
    try:
        os.utime(marker, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        cold = warm.run("check", "nosuchenv", warm=False)
        hot = warm.run("check", "nosuchenv")  # answered by the client itself
        assert (hot.returncode, hot.stderr) == (cold.returncode, cold.stderr)
        until(lambda: not alive(server), "the stale server exited")
        successor = until(
            lambda: (pid := warm.server_pid()) not in (None, server) and pid,
            "a new server came up",
        )
        before = warm.served()
        again = warm.run("check", "nosuchenv")
        assert (again.returncode, again.stderr) == (cold.returncode, cold.stderr)
        assert warm.server_pid() == successor
        assert len(warm.served()) == len(before) + 1
    finally:
        os.utime(marker, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_an_idle_server_exits_and_removes_its_socket(warm: Warm) -> None:
    warm.run("--version", env={"SHIPYARD_WARM_IDLE": "1"})
    server = until(warm.server_pid, "a warm server came up")
    until(lambda: not alive(server), "the idle server exited")
    assert warm.socket() is None


def test_the_client_imports_nothing_but_the_standard_library() -> None:
    code = "import sys, shipyard.warm._client; print(' '.join(sorted(sys.modules)))"
    modules = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    libraries = {"click", "rich", "pydantic", "httpx", "ruamel", "shipyard.cli", "shipyard.config"}
    assert not [m for m in modules if m.split(".")[0] in libraries or m in libraries]
    assert "shipyard.warm._client" in modules


def test_at_a_terminal_it_is_on_by_default_and_says_so_when_it_starts(warm: Warm) -> None:
    code, shown = at_terminal(warm, "--version")
    assert code == 0
    assert shown == f"{STARTED}shipyard {shipyard.__version__}\n"
    server = until(warm.server_pid, "a warm server came up")
    code, shown = at_terminal(warm, "--version")
    assert (code, shown) == (0, f"shipyard {shipyard.__version__}\n")  # served: no notice
    assert len(warm.served()) == 1
    assert warm.server_pid() == server
    # The command itself writes to the client's terminal.
    code, shown = at_terminal(warm, "check", "nosuchenv")
    assert code == 3
    assert "no environment named 'nosuchenv'" in shown
    assert len(warm.served()) == 2


def test_a_ci_job_on_a_terminal_runs_its_commands_itself(warm: Warm) -> None:
    code, shown = at_terminal(warm, "--version", CI="true")
    assert (code, shown) == (0, f"shipyard {shipyard.__version__}\n")  # no server started
    assert not list(warm.sockets.iterdir())  # nor its lock file


def test_a_caller_in_other_groups_gets_a_server_of_its_own(warm: Warm) -> None:
    server = warm.serving()
    first = warm.socket()
    assert first is not None
    cold = warm.run("check", "nosuchenv", warm=False, extra_groups=[4242])
    hot = warm.run("check", "nosuchenv", extra_groups=[4242])  # no server of its groups yet
    assert (hot.returncode, hot.stderr) == (cold.returncode, cold.stderr)
    other = until(
        lambda: [s for s in warm.sockets.glob("warm-*.sock") if s != first],
        "a server for the other groups came up",
    )[0]
    successor = until(lambda: warm.server_pid(other), "its pid")
    groups = Path(f"/proc/{successor}/status").read_text().split("Groups:")[1].split("\n")[0]
    assert "4242" in groups.split()  # it has the caller's groups
    again = warm.run("check", "nosuchenv", extra_groups=[4242])
    assert (again.returncode, again.stderr) == (cold.returncode, cold.stderr)
    assert len(warm.served(other)) == 1
    assert warm.server_pid(first) == server and alive(server)  # the first one serves on
    assert warm.served(first) == []


def test_the_command_takes_the_clients_umask(warm: Warm) -> None:
    warm.serving()
    for umask, mode in ((0o077, 0o600), (0o022, 0o644)):
        fresh = warm.project.parent / f"fresh-{umask:o}"
        fresh.mkdir()
        shutil.copy(EXAMPLE / "go.mod", fresh / "go.mod")
        before = warm.served()
        made = warm.run("init", "--dir", str(fresh), umask=umask)
        assert made.returncode == 0, made.stderr
        assert len(warm.served()) == len(before) + 1
        assert (fresh / "shipyard.yml").stat().st_mode & 0o777 == mode


def test_a_signal_the_caller_ignores_stays_ignored(warm: Warm) -> None:
    """As under ``nohup``: SIGHUP ignored by the client's caller is ignored by the command (a
    SIGHUP passed on would end it with -1 before the SIGINT that follows)."""
    warm.serving()
    before = warm.served()
    hot = _prompting(warm, hot=True, ignoring=(signal.SIGHUP,))
    command = until(lambda: [p for p in warm.served() if p not in before], "the command's pid")[0]
    hot.send_signal(signal.SIGHUP)
    hot.send_signal(signal.SIGINT)
    assert hot.wait(timeout=DEADLINE) == 2  # "aborted": the SIGINT, not the SIGHUP
    assert until(lambda: warm.ended(command), "the server saw it end") == "exit 2"
    _close(hot)


def test_a_stopped_client_stops_its_command_and_continues_it(warm: Warm) -> None:
    """Ctrl-Z (SIGTSTP) stops the command and then the client; continued in the foreground
    (here: no terminal), the command goes on where it was."""
    warm.serving()
    before = warm.served()
    # A process group of its own, whose parent (this test) is in its session: not orphaned, so
    # that SIGTSTP stops it (the kernel discards it in an orphaned group, as a CI job's is).
    hot = _prompting(warm, hot=True, process_group=0)
    command = until(lambda: [p for p in warm.served() if p not in before], "the command's pid")[0]
    hot.send_signal(signal.SIGTSTP)
    until(lambda: _state(command) == "T", "the command stopped")
    until(lambda: _state(hot.pid) == "T", "the client stopped")
    hot.send_signal(signal.SIGCONT)
    until(lambda: _state(command) not in ("T", None), "the command continued")
    assert hot.stdin is not None
    hot.stdin.write("n\n")
    hot.stdin.flush()
    assert hot.wait(timeout=DEADLINE) == 2  # it read the answer: refused
    _close(hot)


def _gone(pid: int) -> bool:
    return not alive(pid)


def _state(pid: int) -> str | None:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return None


def test_no_command_goes_to_a_socket_another_user_could_reach(warm: Warm) -> None:
    """A directory another user owns, or a socket another user listens on, is never given the
    command (its environment, its terminal): the client runs it itself."""
    listener = (
        "import socket, sys, os\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "s.bind(sys.argv[1]); s.listen(4); s.settimeout(60); print('ready', flush=True)\n"
        "try:\n"
        "    c, _ = s.accept(); c.settimeout(60); data = c.recv(65536)\n"
        "except OSError:\n"
        "    print('no connection', flush=True)\n"
        "else:\n"
        "    print('received', len(data), flush=True)\n"
    )
    cold = warm.run("check", "nosuchenv", warm=False)
    for foreign_directory in (True, False):
        other = Path(tempfile.mkdtemp(prefix="sx", dir="/tmp"))
        os.chown(other, 65534, 65534)
        target = Warm(warm.project, other if foreign_directory else warm.sockets)
        path = _socket_path_for(target)
        bound = other / "l.sock"
        spy = subprocess.Popen(  # another user (nobody) listening, with the system's Python
            ["/usr/bin/python3", "-c", listener, str(bound)],
            user=65534,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert spy.stdout is not None
            assert spy.stdout.readline().strip() == "ready"
            if not foreign_directory:  # its socket moved into the user's own directory
                os.replace(bound, path)
            else:
                os.rename(bound, path)
            hot = target.run("check", "nosuchenv")
            assert (hot.returncode, hot.stderr) == (cold.returncode, cold.stderr)
            if not foreign_directory:  # it connected, saw another user, and sent nothing
                assert spy.stdout.readline().strip() == "received 0"
                # ... and started a server of its own there, for the next command
                own = until(
                    functools.partial(target.server_pid, path), "the user's own server came up"
                )
                os.kill(own, signal.SIGTERM)
                until(functools.partial(_gone, own), "the user's own server ended")
        finally:
            spy.kill()
            spy.wait()
            assert spy.stdout is not None
            spy.stdout.close()
            shutil.rmtree(other, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _socket_path_for(target: Warm) -> Path:
    """The socket path the client computes, with the test's environment (and the import path
    of the console script, whose directory comes first)."""
    code = (
        f"import sys; sys.path[0] = {str(Path(SHIPYARD).parent)!r}\n"
        "from shipyard.warm._client import socket_path; print(socket_path())"
    )
    interpreter = (
        Path(SHIPYARD).read_text().splitlines()[0].removeprefix("#!")
    )  # its sys.executable
    found = subprocess.run(
        [interpreter, "-c", code],
        env=target.env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(found.stdout.strip())
