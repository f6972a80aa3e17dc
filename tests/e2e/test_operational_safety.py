"""Lock, deployment logs, secrets, plan, git refs and CI-verified commits, on the real engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx

from tests.e2e.conftest import AppUnderTest, container_env, engine_snapshot, git
from tests.e2e.crash import kill_at_phase, start


def _short(app: AppUnderTest, **deploy: Any) -> None:
    def change(document: Any) -> None:
        document["deploy"]["watch"] = "1s"
        document["deploy"].update(deploy)

    app.edit(change)
    app.commit("settings")


def test_ten_concurrent_deploys_one_proceeds(app: AppUnderTest) -> None:
    _short(app)
    processes = [start(app, "deploy", "development") for _ in range(10)]
    outcomes = []
    for process in processes:
        started = time.monotonic()
        _out, err = process.communicate(timeout=600)
        outcomes.append((process.returncode, err, time.monotonic() - started))
    codes = sorted(code for code, _, _ in outcomes)
    assert codes == [0] + [4] * 9, [(c, e[-300:]) for c, e, _ in outcomes]
    for code, err, _ in outcomes:
        if code == 4:
            assert "deployment in progress: deploy by" in err
            assert " (id " in err
    assert httpx.get(app.url("/health"), timeout=10).status_code == 200


def test_killed_deploy_leaves_service_up_and_next_deploy_recovers(app: AppUnderTest) -> None:
    _short(app, lock_ttl="4s")
    assert app.shipyard("deploy", "development").returncode == 0
    serving = httpx.get(app.url("/version"), timeout=10).json()["git_commit"]

    def slow(document: Any) -> None:
        document["app"]["env"]["TEST_STARTUP_DELAY"] = "20s"

    app.edit(slow)
    app.commit("slow to start")
    victim = kill_at_phase(app, "health", "deploy", "development")
    assert victim.process.returncode == -signal.SIGKILL
    assert httpx.get(app.url("/version"), timeout=10).json()["git_commit"] == serving

    def fast(document: Any) -> None:
        document["app"]["env"].pop("TEST_STARTUP_DELAY")

    app.edit(fast)
    fixed = app.commit("fixed")
    # The killed deploy ran on this machine and its process is gone: its lock is taken over at
    # once (not after lock_ttl), and its candidate removed before this deploy starts its own.
    recovered = app.shipyard("deploy", "development")
    assert recovered.returncode == 0, recovered.stderr
    assert "was interrupted at step 'health'; undoing it" in recovered.stderr
    assert f"{app.name}-development-green removed" in recovered.stderr
    assert httpx.get(app.url("/version"), timeout=10).json()["git_commit"] == fixed
    running = app.running_app_containers()
    assert running == [f"{app.name}-development-live"]


def test_plan_lists_actions_and_changes_nothing(app: AppUnderTest) -> None:
    _short(app)
    before = engine_snapshot(app.name)
    state = Path(app.state_dir)
    first = app.shipyard("plan", "development", "--json")
    assert first.returncode == 0, first.stderr
    actions = json.loads(first.stdout)
    phases = [a["phase"] for a in actions]
    assert phases[:1] == ["build"]
    assert "migrate" in phases and "switch" in phases
    assert engine_snapshot(app.name) == before
    assert not state.exists() or not any(state.rglob("*"))

    assert app.shipyard("deploy", "development").returncode == 0
    app.commit("next")
    before = engine_snapshot(app.name)
    files = {p: p.read_bytes() for p in state.rglob("*") if p.is_file()}
    second = app.shipyard("plan", "development", "--json")
    assert second.returncode == 0, second.stderr
    text = " ".join(a["action"] for a in json.loads(second.stdout))
    assert "start slot green" in text
    assert "drain and stop slot blue" in text
    assert "migration" not in text  # nothing pending
    assert engine_snapshot(app.name) == before
    assert {p: p.read_bytes() for p in state.rglob("*") if p.is_file()} == files


def test_deploy_ref_builds_that_ref_without_touching_the_checkout(app: AppUnderTest) -> None:
    _short(app)
    tagged = app.commit("release")
    git(app.dir, "tag", "v1.4.0")
    app.commit("later work")
    (app.dir / "README.md").write_text("uncommitted edit\n")
    head_before = git(app.dir, "rev-parse", "HEAD")

    result = app.shipyard("deploy", "development", "--ref", "v1.4.0")
    assert result.returncode == 0, result.stderr
    version = httpx.get(app.url("/version"), timeout=10).json()
    assert version["git_commit"] == tagged
    assert version["version"] == "1.4.0"
    assert git(app.dir, "rev-parse", "HEAD") == head_before
    assert (app.dir / "README.md").read_text() == "uncommitted edit\n"
    assert "shipyard-ref-" not in git(app.dir, "worktree", "list")

    bad = app.shipyard("deploy", "development", "--ref", "no-such-branch")
    assert bad.returncode != 0
    assert "not a branch, tag or commit" in bad.stderr


class FakeGitHub(BaseHTTPRequestHandler):
    """A stand-in for GitHub's REST API (GitHub is not reachable here): commit statuses and checks."""

    results: ClassVar[dict[str, tuple[list[dict[str, str]], list[dict[str, str]]]]] = {}
    seen_auth: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        FakeGitHub.seen_auth.append(self.headers.get("Authorization", ""))
        parts = self.path.split("?")[0].strip("/").split("/")
        # repos/{owner}/{repo}/commits/{sha}/(status|check-runs)
        sha, kind = parts[4], parts[5]
        statuses, runs = self.results.get(sha, ([], []))
        body = (
            {"state": "success", "statuses": statuses} if kind == "status" else {"check_runs": runs}
        )
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def test_require_ci_refuses_commits_that_did_not_pass(app: AppUnderTest) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGitHub)  # the kernel picks its port
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env_file = app.dir / ".env.development"
        env_file.write_text(env_file.read_text() + "GITHUB_TOKEN=ghp_canarytoken0123456789abcdef\n")
        _short(
            app,
            require_ci=True,
            github={"repository": "togather/server", "api_url": f"http://127.0.0.1:{port}"},
        )
        commit = git(app.dir, "rev-parse", "HEAD")
        FakeGitHub.results[commit] = (
            [{"context": "lint", "state": "success"}],
            [{"name": "tests", "status": "completed", "conclusion": "failure"}],
        )
        before = engine_snapshot(app.name)
        refused = app.shipyard("deploy", "development")
        assert refused.returncode == 6, refused.stderr
        assert "has not passed CI (tests: failure)" in refused.stderr
        assert engine_snapshot(app.name) == before
        assert FakeGitHub.seen_auth[-1] == "Bearer ghp_canarytoken0123456789abcdef"
        assert "ghp_canarytoken" not in refused.stderr + refused.stdout

        FakeGitHub.results[commit] = (
            [{"context": "lint", "state": "success"}],
            [{"name": "tests", "status": "completed", "conclusion": "success"}],
        )
        allowed = app.shipyard("deploy", "development")
        assert allowed.returncode == 0, allowed.stderr
        assert "2 check(s) passed" in allowed.stderr
    finally:
        server.shutdown()
        server.server_close()


def test_deployment_logs_are_kept_locally_and_on_the_host(app: AppUnderTest) -> None:
    _short(app)
    assert app.shipyard("deploy", "development").returncode == 0

    def broken(document: Any) -> None:
        document["app"]["env"]["TEST_UNHEALTHY"] = "1"
        document["health"]["start_timeout"] = "3s"

    app.edit(broken)
    app.commit("broken")
    failed = app.shipyard("deploy", "development", "--json")
    assert failed.returncode == 6
    events = [json.loads(line) for line in failed.stdout.splitlines()]
    deployment = events[0]["deployment_id"]

    shown = app.shipyard("logs", "development")
    assert shown.returncode == 0, shown.stderr
    lines = [json.loads(line) for line in shown.stdout.splitlines()]  # every line valid JSON
    assert {e["deployment_id"] for e in lines} == {deployment}
    final = next(e for e in lines if e["kind"] == "deploy.failed")
    assert final["data"]["completed"][:4] == ["validate", "lock", "repair", "version"]
    assert "health" not in final["data"]["completed"]
    on_host = Path(app.state_dir) / app.name / "development" / "logs" / f"{deployment}.jsonl"
    assert on_host.read_text() == shown.stdout
    assert oct(on_host.stat().st_mode & 0o777) == "0o600"

    app_log = app.shipyard("logs", "development", "--app", "--tail", "20")
    assert app_log.returncode == 0
    assert '"msg"' in app_log.stdout  # the Go server's JSON log lines


def test_secret_canaries_never_leak(app: AppUnderTest) -> None:
    token = os.urandom(6).hex()
    canaries = {
        "POSTGRES_PASSWORD": f"pg-canary-{token}",
        "JWT_SECRET": f"jwt-canary-{token}-0123456789abcdef0123456789",
        "CSRF_KEY": f"csrf-canary-{token}-0123456789abcdef012345678",
        "PAYMENT_API_TOKEN": f"tok-canary-{token}",
        "SMTP_URL": f"smtp://mailer:smtp-canary-{token}@mail.invalid:587",
    }
    env_file = app.dir / ".env.development"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in canaries.items()))
    _short(app)
    outputs: list[str] = []

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        result = app.shipyard(*args)
        outputs.extend([result.stdout, result.stderr])
        return result

    assert run("check", "development").returncode == 0
    assert run("plan", "development").returncode == 0
    assert run("deploy", "development", "--json").returncode == 0
    assert run("deploy", "development").returncode == 0

    def broken(document: Any) -> None:
        document["app"]["env"]["TEST_FAIL_STARTUP"] = "1"

    app.edit(broken)
    app.commit("fails")
    assert run("deploy", "development", "--json").returncode == 6
    assert run("rollback", "development").returncode == 0
    assert run("status", "development", "--json").returncode == 0
    assert run("history", "development", "--json").returncode == 0
    assert run("logs", "development").returncode == 0
    assert run("render", "development").returncode == 0

    secrets = [
        f"pg-canary-{token}",
        f"jwt-canary-{token}",
        f"csrf-canary-{token}",
        f"tok-canary-{token}",
        f"smtp-canary-{token}",
    ]
    for text in outputs:
        for secret in secrets:
            assert secret not in text, f"{secret} leaked into command output"
    base = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
    files = [p for p in (base / "shipyard" / "logs" / app.name).rglob("*") if p.is_file()]
    files += [p for p in Path(app.state_dir).rglob("*") if p.is_file()]
    env_files = [p for p in files if p.suffix == ".env"]
    assert env_files, "the stack's env files are on the host"
    for path in env_files:  # the one place secrets live: env files for the containers, 0600
        assert oct(path.stat().st_mode & 0o777) == "0o600", path
    checked = [p for p in files if p.suffix != ".env"]
    assert any(p.name == "history.jsonl" for p in checked)
    assert any(p.suffix == ".jsonl" and "logs" in p.parts for p in checked)
    for path in checked:
        content = path.read_text(errors="replace")
        for secret in secrets:
            assert secret not in content, f"{secret} leaked into {path}"
    # argv of every process on the machine right now (a deploy passes secrets only in files)
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().decode(errors="replace")
        except OSError:
            continue
        for secret in secrets:
            assert secret not in argv


def test_env_file_values_reach_the_containers_exactly(app: AppUnderTest) -> None:
    expected = app.use_awkward_env()
    _short(app)
    result = app.shipyard("deploy", "development")
    # The awkward password reached PostgreSQL (through Compose's env file), golang-migrate
    # (docker --env-file) and the app (URL-encoded in DATABASE_URL): all of them connected.
    assert result.returncode == 0, result.stderr
    assert httpx.get(app.url("/readyz"), timeout=10).status_code == 200
    live = container_env(
        subprocess.run(
            ["docker", "inspect", f"{app.name}-development-live"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    for key, value in expected.items():
        assert live.get(key) == value, key
    assert expected["POSTGRES_PASSWORD"] not in result.stderr + result.stdout


def test_destroy_is_refused_while_a_deploy_holds_the_lock(app: AppUnderTest) -> None:
    _short(app)
    assert app.shipyard("deploy", "development").returncode == 0
    # A deploy holds the lock (its owner record, heartbeating now).
    lock = app.state_dir / app.name / "development" / "lock"
    lock.mkdir(mode=0o700)
    owner = {
        "deployment_id": "20991231T000000Z-abcdef",
        "operation": "deploy",
        "by": "ops@laptop",
        "pid": 4242,
        "started_at": "2099-12-31T00:00:00Z",
        "heartbeat": time.time(),
        "ttl": 600,
    }
    (lock / "owner.json").write_text(json.dumps(owner))
    before = engine_snapshot(app.name)
    refused = app.shipyard("destroy", "development", "--yes", "--volumes")
    assert refused.returncode == 4, refused.stderr
    assert "deployment in progress: deploy by ops@laptop (pid 4242)" in refused.stderr
    assert engine_snapshot(app.name) == before
    assert httpx.get(app.url("/health"), timeout=10).status_code == 200

    (lock / "owner.json").unlink()
    lock.rmdir()
    destroyed = app.shipyard("destroy", "development", "--yes", "--volumes")
    assert destroyed.returncode == 0, destroyed.stderr
    state = app.state_dir / app.name / "development"
    assert [p.name for p in state.iterdir()] == ["snapshots"]  # backups are kept, the rest gone
    assert not [c for c in engine_snapshot(app.name)["containers"] if c.startswith(app.name)]
