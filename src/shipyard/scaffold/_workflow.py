"""``shipyard ci github``: a GitHub Actions workflow that tests every push to a branch and then
deploys it to one environment with ``shipyard deploy``.

What the workflow does, and why:
- ``test`` runs the app's tests (``go test ./...`` for a Go build, the image build for a
  Dockerfile one); ``deploy`` needs it, so a deploy only starts once the commit's tests passed,
  which is what ``deploy.require_ci`` checks (the deploy job's own, running check is not
  counted: see ``shipyard.deploy._ci``).
- ``deploy`` runs in the GitHub environment of the same name (its protection rules apply) and in
  one concurrency group per environment that queues (``cancel-in-progress: false``): a deploy
  is never cancelled half-way by the next push.
- Secrets come from the repository's secrets through ``env:`` only, never on a command line:
  the env file's whole text (``SHIPYARD_ENV_FILE``), written with mode 0600 where shipyard.yml
  expects it; for ssh:// targets the private key (``SHIPYARD_SSH_KEY``, given to an ssh-agent,
  never written to disk) and the pinned host keys (``SHIPYARD_KNOWN_HOSTS``).
- ``shipyard deploy ENV --json`` writes its events (masked like every event) to a file outside
  the checkout, kept as an artifact, also when the deploy fails.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from shipyard.config import Config, GoBuild
from shipyard.errors import ConfigExists

WORKFLOW = Path(".github") / "workflows" / "deploy.yml"
# The names of the repository secrets the workflow reads (names, not values).
ENV_FILE_SECRET = "SHIPYARD_ENV_FILE"  # noqa: S105
SSH_KEY_SECRET = "SHIPYARD_SSH_KEY"  # noqa: S105
KNOWN_HOSTS_SECRET = "SHIPYARD_KNOWN_HOSTS"  # noqa: S105
PACKAGE_VARIABLE = "SHIPYARD_PACKAGE"
# Outside the checkout: a file in it would make the tree dirty, and a deploy refuses that.
EVENTS_DIR = "$RUNNER_TEMP/shipyard-events"


@dataclass(frozen=True)
class Workflow:
    """What ``write_workflow`` wrote, and what the repository still needs."""

    path: Path
    replaced: bool
    secrets: list[str] = field(default_factory=list)
    variables: list[str] = field(default_factory=list)
    next: list[str] = field(default_factory=list)


def write_workflow(
    config: Config, *, branch: str = "main", package: str | None = None, force: bool = False
) -> Workflow:
    """Write ``.github/workflows/deploy.yml`` at the root of the git repository that holds
    shipyard.yml (GitHub reads workflows there only), for ``config``'s environment.
    ``package``: what ``pip install`` installs shipyard from (none: the repository variable
    ``SHIPYARD_PACKAGE``). Raises ``ConfigExists`` (nothing written) when the file exists and
    ``force`` is off."""
    path = repository_root(config) / WORKFLOW
    exists = path.exists()
    if exists and not force:
        raise ConfigExists(
            f"{path} exists; nothing was changed",
            hint="`shipyard ci github --force` replaces it",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_workflow(config, branch=branch, package=package), encoding="utf-8")
    environment = config.environment.name
    secrets = [
        ENV_FILE_SECRET,
        *([SSH_KEY_SECRET, KNOWN_HOSTS_SECRET] if _over_ssh(config) else []),
    ]
    variables = [] if package else [PACKAGE_VARIABLE]
    steps = [
        f"create the GitHub environment {environment!r} (Settings → Environments), with its "
        "protection rules",
        f"add its secret {ENV_FILE_SECRET}: the whole text of {_env_file(config)}",
    ]
    if _over_ssh(config):
        steps += [
            f"add its secret {SSH_KEY_SECRET}: the private key that logs in to "
            + ", ".join(config.environment.nodes),
            f"add its secret {KNOWN_HOSTS_SECRET}: their host keys as known_hosts lines "
            "(`ssh-keyscan HOST` checked against the hosts' own keys)",
        ]
    if not package:
        steps.append(
            f"add the repository variable {PACKAGE_VARIABLE}: what `pip install` installs "
            "shipyard from (a version, a wheel URL or a git URL)"
        )
    steps.append(f"commit {WORKFLOW} and push to {branch}")
    return Workflow(path, exists, secrets, variables, steps)


def render_workflow(config: Config, *, branch: str = "main", package: str | None = None) -> str:
    """The workflow's text (YAML with comments)."""
    environment = config.environment.name
    install = _quoted(package) if package else f"${{{{ vars.{PACKAGE_VARIABLE} }}}}"
    return "\n".join(
        [
            f"# Written by `shipyard ci github --environment {environment} --branch {branch}`:",
            f"# every push to {branch} is tested, then deployed to {environment}.",
            "name: deploy",
            "",
            "on:",
            "  push:",
            f"    branches: [{_quoted(branch)}]",
            "  workflow_dispatch:",
            "",
            "defaults:",
            "  run:",
            "    shell: bash    # -eo pipefail: a failed deploy fails its step, tee or not",
            "",
            "permissions:",
            "  contents: read",
            "  checks: read      # deploy.require_ci reads the commit's check runs",
            "  statuses: read    # … and its commit statuses",
            "",
            "jobs:",
            *_test_job(config),
            "",
            *_deploy_job(config, install),
            "",
        ]
    )


def _test_job(config: Config) -> list[str]:
    build = config.build
    lines = [
        "  test:",
        "    runs-on: ubuntu-latest",
        "    steps:",
        "      - uses: actions/checkout@v4",
    ]
    if isinstance(build, GoBuild):
        directory = _relative(config, build.context)
        lines += [
            "      - uses: actions/setup-go@v5",
            "        with:",
            f"          go-version-file: {_quoted(_join(directory, 'go.mod'))}",
            "      - name: Go tests",
            *([f"        working-directory: {_quoted(directory)}"] if directory != "." else []),
            "        run: go test ./...",
        ]
    else:
        context = _relative(config, build.context)
        dockerfile = shlex.quote(_join(context, build.dockerfile))
        lines += [
            "      - name: The image builds",
            "        run: |",
            f"          docker build --file {dockerfile} {shlex.quote(context)}",
        ]
    return lines


def _deploy_job(config: Config, install: str) -> list[str]:
    environment = config.environment.name
    lines = [
        "  deploy:",
        "    needs: test",
        "    runs-on: ubuntu-latest",
        f"    environment: {_quoted(environment)}",
        "    concurrency:",
        f"      group: {_quoted(f'shipyard-deploy-{environment}')}",
        "      cancel-in-progress: false    # a running deploy is never cancelled; the next waits",
        "    steps:",
        "      - uses: actions/checkout@v4",
        "        with:",
        "          fetch-depth: 0    # the version comes from the commit and its tags",
    ]
    if isinstance(config.build, GoBuild):
        directory = _relative(config, config.build.context)
        lines += [
            "      - uses: actions/setup-go@v5",
            "        with:",
            f"          go-version-file: {_quoted(_join(directory, 'go.mod'))}",
        ]
    lines += [
        "      - uses: actions/setup-python@v5",
        "        with:",
        "          python-version: '3.12'",
        "      - name: Install shipyard",
        "        env:",
        f"          {PACKAGE_VARIABLE}: {install}",
        f'        run: python -m pip install "${PACKAGE_VARIABLE}"',
        "      - name: Secrets",
        "        env:",
        f"          {ENV_FILE_SECRET}: ${{{{ secrets.{ENV_FILE_SECRET} }}}}",
    ]
    script = [
        "umask 077",
        f"printf '%s\\n' \"${ENV_FILE_SECRET}\" > {shlex.quote(_env_file(config))}",
    ]
    if _over_ssh(config):
        lines += [
            f"          {SSH_KEY_SECRET}: ${{{{ secrets.{SSH_KEY_SECRET} }}}}",
            f"          {KNOWN_HOSTS_SECRET}: ${{{{ secrets.{KNOWN_HOSTS_SECRET} }}}}",
        ]
        known_hosts = _known_hosts(config)
        script += [
            'mkdir -p "$HOME/.ssh"',
            f"printf '%s\\n' \"${KNOWN_HOSTS_SECRET}\" >> {known_hosts}",
            "# The key goes to an agent, never to a file; later steps find the agent.",
            'eval "$(ssh-agent -s)" > /dev/null',
            f"printf '%s\\n' \"${SSH_KEY_SECRET}\" | ssh-add - 2> /dev/null",
            'echo "SSH_AUTH_SOCK=$SSH_AUTH_SOCK" >> "$GITHUB_ENV"',
            'echo "SSH_AGENT_PID=$SSH_AGENT_PID" >> "$GITHUB_ENV"',
        ]
    lines += ["        run: |", *(f"          {line}" for line in script)]
    lines += ["      - name: Deploy"]
    github = config.deploy.github
    if config.deploy.require_ci and github is not None:
        lines += [
            "        env:",
            "          # For deploy.require_ci: this run's token reads the commit's checks.",
            f"          {github.token_env}: ${{{{ github.token }}}}",
        ]
    deploy = ["shipyard", "deploy", environment, "--json", "--wait", "30m"]
    config_file = _relative(config, str(config.path))
    if config_file != "shipyard.yml":
        deploy += ["--config", config_file]
    lines += [
        "        run: |",
        f'          mkdir -p "{EVENTS_DIR}"',
        f'          {shlex.join(deploy)} | tee "{EVENTS_DIR}/deploy.jsonl"',
        "      - name: Keep the deploy's events",
        "        if: always()",
        "        uses: actions/upload-artifact@v4",
        "        with:",
        f"          name: {_quoted(f'shipyard-events-{environment}')}",
        "          path: ${{ runner.temp }}/shipyard-events/",
        "          if-no-files-found: ignore",
    ]
    return lines


def _over_ssh(config: Config) -> bool:
    return any(node.startswith("ssh://") for node in config.environment.nodes)


def _env_file(config: Config) -> str:
    env_file = config.environment.env_file
    return (
        _relative(config, str(env_file))
        if env_file is not None
        else f".env.{config.environment.name}"
    )


def _known_hosts(config: Config) -> str:
    """Where ssh looks for pinned host keys: ``providers.ssh.known_hosts``, else its default."""
    ssh = config.providers.get("ssh") or {}
    given = ssh.get("known_hosts") if isinstance(ssh, dict) else None
    if not given:
        return '"$HOME/.ssh/known_hosts"'
    if str(given).startswith("~/"):
        return '"$HOME"/' + shlex.quote(str(given)[2:])
    return shlex.quote(_relative(config, str(given)))


def repository_root(config: Config) -> Path:
    """The git repository's root above shipyard.yml (its own directory when there is none)."""
    for directory in (config.root.resolve(), *config.root.resolve().parents):
        if (directory / ".git").exists():
            return directory
    return config.root.resolve()


def _relative(config: Config, path: str) -> str:
    """``path`` (relative to shipyard.yml, or absolute) as a path from the repository's root,
    where the workflow's steps run."""
    resolved = (config.root / path).resolve()
    try:
        return resolved.relative_to(repository_root(config)).as_posix() or "."
    except ValueError:
        return path


def _join(directory: str, name: str) -> str:
    return name if directory in ("", ".") else f"{directory}/{name}"


def _quoted(value: str) -> str:
    """``value`` as a YAML scalar: plain when that is safe, else single-quoted."""
    if value and all(c.isalnum() or c in "._/-" for c in value):
        return value
    return "'" + value.replace("'", "''") + "'"
