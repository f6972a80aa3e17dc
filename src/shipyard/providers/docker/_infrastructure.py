"""Infrastructure: the network, the proxy and guard containers, the database container with
its extensions, and the app's credentials checked against it."""

from __future__ import annotations

import json

from ruamel.yaml import YAML

from shipyard.database import (
    Database,
    DatabaseError,
    password_refused,
    psql_error,
    verifier_matches,
)
from shipyard.docker import ContainerInfo
from shipyard.providers.docker._base import StepsBase, infra_digest
from shipyard.providers.docker._env import (
    compose_env_file_text,
    database_env,
    external_database,
)
from shipyard.providers.docker._network import ensure_network
from shipyard.providers.docker._stack import to_yaml
from shipyard.state import now_iso
from shipyard.waiting import Interval, wait_until

PROXY_RECREATED = (
    "recreate the proxy (its ports, image, volumes or DNS settings changed): for the second it "
    "takes to restart, new connections are refused"
)


class Infrastructure(StepsBase):
    """The ``ensure_infrastructure`` step."""

    def ensure_infrastructure(self) -> str:
        """The network, proxy, guard and database as configured, the extensions created and the
        app's credentials checked. When nothing changed since the last full check (the same
        definition, the same containers running, see ``_unchanged_infrastructure``) only cheap
        checks run: the extensions present and the env file's password the role's."""
        infra = to_yaml(self._infra())
        unchanged = self._unchanged_infrastructure(infra)
        if unchanged is not None:
            return unchanged
        summary = self._full_infrastructure(infra)
        self._remember_infrastructure(infra)
        return summary

    def _infra_containers(self) -> dict[str, str]:
        """Role → container name of what the infra project runs."""
        services = self._infra()["services"]
        names = {
            "proxy": self.names.proxy,
            "guard": self.names.guard,
            "db": self.names.database,
            "dbclient": self.names.database_client,
        }
        return {role: name for role, name in names.items() if role in services}

    def _remember_infrastructure(self, infra: str) -> None:
        """After a full check: the definition it applied and the containers it verified (the
        proxy by the definition hash Compose labels it with: it may be started later, at the
        switch), so that the next operation can tell nothing changed."""
        containers: dict[str, str | None] = {}
        for role, name in self._infra_containers().items():
            info = self.docker.container(name)
            containers[role] = info.id if info is not None and info.running else None
        record = {
            "definition": infra_digest(infra),
            "containers": containers,
            "proxy_config_hash": self.docker.compose_config_hash(
                self.names.infra_project, self.layout.infra_compose, "proxy"
            ),
            "verified_at": now_iso(),
        }
        self._write(self.layout.infra_verified, json.dumps(record, indent=2) + "\n")

    def _unchanged_infrastructure(self, infra: str) -> str | None:
        """What still holds of the last full check, or ``None`` when a full check is needed:
        the definition (compose file: images, ports, volumes, guard, database settings) changed,
        or a container is missing, stopped, unhealthy, off the network or another than the one
        verified (recreated), or the proxy was created from another definition. Kept on this
        path: the extensions are read and must all be there, and the role's stored SCRAM
        verifier must match the env file's password (a changed password gets the full login
        check and its message). Skipped: ``compose up`` and its wait, ``CREATE EXTENSION``, the
        login from a one-off container, the port check (the running proxy holds the ports)."""
        record = self._verified_record()
        roles = self._infra_containers()
        named = self.docker.containers_named(list(roles.values()))
        found = {role: named[name] for role, name in roles.items()}
        if not infra_still_verified(record, infra, found, network=self.names.network):
            return None
        assert isinstance(record, dict)  # noqa: S101 — infra_still_verified checked it
        database, section = self._database(), self.config.database
        said = f"unchanged since {record.get('verified_at', '?')}: containers running"
        if database is None or section is None:
            return said
        if database.external is not None:
            return self._unchanged_external(database, infra, said)
        facts = database.facts()
        if facts.missing(section.extensions):
            return None
        password = self.config.secrets.get(section.password_env) or ""
        if verifier_matches(facts.role_password, password) is not True:
            return None  # the full check logs in as the app would, and says what is wrong
        self._prefetched = facts.migration  # the plan's read, spared
        self._fence()
        self._write(self.layout.infra_compose, infra)
        if self.host.get(self.layout.database_env) is None:  # the container exists: write it back
            self._write_database_env()
        extensions = ", ".join(f"{n} {facts.extensions[n]}" for n in section.extensions)
        return (
            f"{said}; {extensions}; role {section.user}'s password is the env file's "
            "(no readiness wait, extension creation or login container needed)"
        )

    def _unchanged_external(self, database: Database, infra: str, said: str) -> str | None:
        """The fast path for an external database: its client still logs in with what the env
        file's URL says now (its env file is rewritten first; a changed one gets the full check,
        which recreates the client) and the extensions are all there."""
        assert self.config.database is not None  # noqa: S101
        if self._write_client_env():
            return None
        try:
            facts = database.facts()
        except DatabaseError:
            return None  # the full check waits for it, and says what is wrong
        if facts.missing(self.config.database.extensions):
            return None
        self._prefetched = facts.migration
        self._fence()
        self._write(self.layout.infra_compose, infra)
        extensions = ", ".join(
            f"{n} {facts.extensions[n]}" for n in self.config.database.extensions
        )
        return f"{said}; {extensions}; {self._external_said(database)}"

    def _external_said(self, database: Database) -> str:
        endpoint = database.external
        assert endpoint is not None  # noqa: S101
        return (
            f"external database {database.section.name} at {endpoint.host}:{endpoint.port} "
            f"(role {database.section.user}, from {self.config.database.url_env if self.config.database else 'the URL'})"
        )

    def _write_client_env(self) -> bool:
        """The external database's client env file as the env file's URL says now; whether it
        changed (or was missing)."""
        external = external_database(self.config)
        assert external is not None  # noqa: S101
        text = compose_env_file_text(external[2], source="database client env")
        if self.host.get(self.layout.database_client_env) == text.encode():
            return False
        self._fence()
        self._write(self.layout.database_client_env, text)
        return True

    def _full_infrastructure(self, infra: str) -> str:
        # Before anything is written or created: Compose (validate asks only when it expects
        # this path) and the port, which may have been taken since validate.
        self.compose_ready()
        self._refuse_taken_ports()
        self._fence()
        # A full check that fails half-way must not leave an earlier record behind.
        self.host.run(["rm", "-f", str(self.layout.infra_verified)], check=False)
        self._write(self.layout.infra_compose, infra)
        database = self._database()
        if database is not None and database.external is not None:
            self._write_client_env()
        elif database is not None:  # Compose reads every service's env file, whichever it starts
            self._write_database_env()
        proxy = ensure_network(self.config, self.docker) + self._refresh_proxy()
        guard = self._ensure_guard()
        if database is None:
            self.docker.compose(
                self.names.infra_project,
                self.layout.infra_compose,
                ["create", "--no-recreate", "proxy"],
            )
            return proxy + guard + "no database"
        assert self.config.database is not None  # noqa: S101
        if database.external is not None:
            return proxy + guard + self._external_ready(database)
        self.docker.compose_up(
            self.names.infra_project,
            self.layout.infra_compose,
            services=["db"],
            wait_timeout=self.config.database.ready_timeout,
        )
        versions = database.ensure_extensions(self.config.database.extensions)
        extensions = ", ".join(f"{k} {v}" for k, v in versions.items())
        return f"{proxy}{guard}database ready; {extensions}; {self.verify_credentials()}"

    def _external_ready(self, database: Database) -> str:
        """The client of the external database started (recreated when its env file changed)
        and answered by the server within ``database.ready_timeout``; the extensions created
        and verified through it, logged in as the app is, with the URL's credentials."""
        assert self.config.database is not None and database.external is not None  # noqa: S101
        endpoint = database.external
        self.docker.compose_up(
            self.names.infra_project, self.layout.infra_compose, services=["dbclient"]
        )

        def answer() -> str | None:
            result = self.docker.exec(
                database.container,
                ["psql", "-X", "-q", "-At", "-c", "SELECT 1"],
                check=False,
                timeout=30,
            )
            return None if result.ok else psql_error(result.stderr)

        timeout = self.config.database.ready_timeout
        error = wait_until(
            answer, timeout=timeout, interval=Interval(0.5, 2.0, 5.0), clock=self.clock,
            done=lambda error: error is None or password_refused(error),
        )  # fmt: skip
        if error is not None or (error := answer()) is not None:
            key = self.config.database.url_env
            cause = (
                "refuses the URL's credentials" if password_refused(error) else "does not answer"
            )
            raise DatabaseError(
                f"the external database at {endpoint.host}:{endpoint.port} ({key} in the env "
                f"file) {cause}: {error}",
                hint="no slot was started; check the URL, and that the database admits "
                f"connections from {self.host.name}",
            )
        versions = database.ensure_extensions(self.config.database.extensions)
        extensions = ", ".join(f"{k} {v}" for k, v in versions.items())
        return f"{self._external_said(database)} ready; {extensions}"

    def _write_database_env(self) -> None:
        """The database container's env file, written when the container is created and then
        left as it is: its POSTGRES_* values count only when the data directory is created, and
        Compose recreates a container whose env file changed, which would restart PostgreSQL
        under the live version for a password the database does not use (``verify_credentials``
        and ``rotate_password`` are for changing it)."""
        if (
            self.docker.container(self.names.database) is not None
            and self.host.get(self.layout.database_env) is not None
        ):
            return
        self._write(
            self.layout.database_env,
            compose_env_file_text(database_env(self.config), source="database env"),
        )

    def verify_credentials(self) -> str:
        """The database accepts the app's credentials as the env file gives them now. They are
        checked as the app connects (over the network, with the password) because the database
        container's own socket trusts any: a password changed in the env file (a re-cloned
        checkout, a regenerated file) passes the extensions and migrations and would otherwise
        only show as the new version never becoming healthy. Refused before any slot starts."""
        database, section = self._database(), self.config.database
        if database is None or section is None:
            return "no database"
        if database.external is not None:  # its client logged in with the app's URL
            return f"{self._external_said(database)}: the app's URL logs in"
        error = self._login_error(database)
        if error is None:
            return f"role {section.user} logs in with the env file's password"
        key, environment = section.password_env, self.config.environment.name
        env_file = self.config.environment.env_file
        where = env_file.name if env_file is not None else "the env file"
        if password_refused(error):
            raise DatabaseError(
                f"the database refuses the password of role {section.user!r}: the role was "
                f"created with another password than the one {key!r} (database.password_env) "
                f"holds in {where} now, so the new version could not connect; no slot was "
                f"started ({error})",
                hint=f"if {key!r} changed by mistake (a re-cloned checkout, a regenerated env "
                f"file), restore its old value in {where}; to change the database's password, "
                f"run `shipyard db rotate-password {environment}`: it gives role "
                f"{section.user!r} the value {key!r} holds now and redeploys the live version "
                "with it",
            )
        raise DatabaseError(
            f"the app's credentials from {where} do not log in to the database (role "
            f"{section.user!r}, database {section.name!r}): {error}",
            hint="the new version could not connect either; no slot was started",
        )

    def _refresh_proxy(self) -> str:
        """Recreate a running proxy whose definition changed (its ports, image or volumes: a new
        ``proxy.http_port`` or domains) so the change applies; it does not answer for the second
        it takes to restart. Its routing config changes never need this (the admin API loads it)."""
        proxy = self.docker.container(self.names.proxy)
        if proxy is None:
            return ""
        wanted = self.docker.compose_config_hash(
            self.names.infra_project, self.layout.infra_compose, "proxy"
        )
        if proxy.labels.get("com.docker.compose.config-hash") == wanted:
            return ""
        self._warn(PROXY_RECREATED)
        self._fence()
        self.docker.compose_up(
            self.names.infra_project, self.layout.infra_compose, services=["proxy"], wait_timeout=60
        )
        return "proxy recreated (its ports, image or volumes changed); "

    def _ensure_guard(self) -> str:
        """The guard running as configured (created, or recreated when its definition changed)."""
        if not self.config.deploy.guard_image:
            return ""
        if self.docker_socket is None:
            self._warn(
                f"no guard on {self.host.name}: its Docker engine is not reached through a Unix "
                "socket, so a live container stopped outside shipyard stays stopped until the "
                "next deploy or `shipyard repair`"
            )
            return ""
        before = self.docker.container(self.names.guard)
        self.docker.compose_up(
            self.names.infra_project, self.layout.infra_compose, services=["guard"]
        )
        return "" if before is not None and before.running else "guard started; "

    def proxy_definition_changed(self) -> bool:
        """Whether the running proxy was created from another definition than the config renders
        now (read from the compose file on the host; changes nothing)."""
        proxy = self.docker.container(self.names.proxy)
        written = self.host.get(self.layout.infra_compose)
        if proxy is None or written is None:
            return False
        wanted = self._infra()["services"]["proxy"]
        before = YAML(typ="safe", pure=True).load(written.decode())
        return bool(before.get("services", {}).get("proxy") != wanted)


def infra_still_verified(
    record: object, infra: str, found: dict[str, ContainerInfo | None], *, network: str
) -> bool:
    """Whether the last full infrastructure check (``record``, as ``_remember_infrastructure``
    wrote it) still holds for the definition ``infra`` and the containers ``found`` now (role →
    inspected container, ``None``: missing): the same definition, and each container running,
    healthy, on ``network`` and the one verified — the proxy may be another one created from
    the same definition (Compose's config hash), as the switch starts it when it is missing."""
    if not isinstance(record, dict):
        return False
    verified = record.get("containers")
    if (
        record.get("definition") != infra_digest(infra)
        or not isinstance(verified, dict)
        or set(verified) != set(found)
    ):
        return False
    return all(
        _still_verified(role, info, verified[role], record.get("proxy_config_hash"), network)
        for role, info in found.items()
    )


def _still_verified(
    role: str, info: ContainerInfo | None, verified_id: object, proxy_hash: object, network: str
) -> bool:
    if info is None or not info.running or info.health not in (None, "healthy"):
        return False
    if role != "guard" and network not in info.addresses:
        return False
    if info.id == verified_id:
        return True
    return (
        role == "proxy"
        and bool(proxy_hash)
        and info.labels.get("com.docker.compose.config-hash") == proxy_hash
    )
