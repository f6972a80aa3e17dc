from __future__ import annotations

import cProfile
import pstats
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipyard.config import GoBuild, load_config, parse_duration
from shipyard.errors import ConfigError
from tests.bad_configs import CATALOGUE, ENV_FILE, VALID, BadConfig, write


def _load(tmp_path: Path, case: BadConfig) -> ConfigError:
    path = write(tmp_path, case)
    with pytest.raises(ConfigError) as caught:
        load_config(path, case.environment, process_env={})
    return caught.value


def _issues(tmp_path: Path, yaml: str, environment: str = "development") -> list[str]:
    """The problems, as printed, of loading ``environment`` from ``yaml`` written to
    ``tmp_path / "shipyard.yml"`` beside the development env file (loading must fail)."""
    path = write(tmp_path, BadConfig("invalid", yaml, "", ""))
    with pytest.raises(ConfigError) as caught:
        load_config(path, environment, process_env={})
    return [str(issue) for issue in caught.value.issues]


def test_catalogue_is_large_enough() -> None:
    assert len({case.id for case in CATALOGUE}) >= 15


@pytest.mark.parametrize("case", CATALOGUE, ids=[c.id for c in CATALOGUE])
def test_bad_config_names_file_line_and_key(tmp_path: Path, case: BadConfig) -> None:
    error = _load(tmp_path, case)
    lines = [str(issue) for issue in error.issues]
    matching = [line for line in lines if case.expected in line]
    assert matching, f"{case.expected!r} not in {lines}"
    assert any(
        line.startswith(f"{tmp_path / 'shipyard.yml'}:{case.location}") for line in matching
    ), lines


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = VALID.replace("port: 8080", "port: 70000").replace("kind: go", "kind: go\n  wat: 1")
    case = BadConfig("two", text, "", "")
    error = _load(tmp_path, case)
    messages = " | ".join(str(i) for i in error.issues)
    assert "app.port" in messages
    assert "build.wat" in messages


def test_a_misspelt_environments_section_is_named_with_the_missing_environments(
    tmp_path: Path,
) -> None:
    yaml = VALID.replace("environments:", "enviroments:").replace(
        "  port: 8080\n", "  port: 8080\n  prot: 1\n"
    )
    path = tmp_path / "shipyard.yml"
    assert _issues(tmp_path, yaml) == [
        f"{path} environments: at least one environment is required",
        f"{path}:4:3 app.prot: unknown key (did you mean 'port'?)",
        f"{path}:17:1 enviroments: unknown key (did you mean 'environments'?)",
    ]


def test_an_undefined_environment_comes_with_the_other_problems(tmp_path: Path) -> None:
    yaml = (
        VALID.replace("    target: local\n", "    target: local\n    colour: blue\n", 1)
        + "extra: 1\n"
    )
    path = tmp_path / "shipyard.yml"
    assert _issues(tmp_path, yaml, "staging") == [
        f"{path}:16:1 environments: no environment named 'staging' (defined: development, production)",
        f"{path}:19:5 environments.development.colour: unknown key",
        f"{path}:24:1 extra: unknown key",
    ]


def test_a_quoted_value_over_several_lines_is_not_blamed_for_a_later_error(
    tmp_path: Path,
) -> None:
    yaml = _with('"{version}"', '"{version}\n      continued"').replace(
        "http_port: 18080", "http_port: [18080"
    )
    path = write(tmp_path, BadConfig("multiline", yaml, "", ""))
    with pytest.raises(ConfigError) as caught:
        load_config(path, "development", process_env={})
    assert [(i.line, i.message[:40]) for i in caught.value.issues] == [
        (17, "invalid YAML: expected ',' or ']', but g")
    ]


@pytest.mark.parametrize(
    ("written", "key_path", "where"),
    [
        (
            "    database: {password: x}\n",
            "environments.production.database.password",
            "put the password there under the name POSTGRES_PASSWORD (the key database.password_env names)",
        ),
        (
            "    deploy: {registry: {url: ghcr.io/acme, password: x}}\n",
            "environments.production.deploy.registry.password",
            "put the password there and name its key in deploy.registry.password_env",
        ),
        (
            "    deploy: {github: {repository: acme/shop, token: x}}\n",
            "environments.production.deploy.github.token",
            "put the token there under the name GITHUB_TOKEN (the key deploy.github.token_env names)",
        ),
        (
            "    notifications: {sinks: [{kind: ntfy, topic: ops, token: x}]}\n",
            "environments.production.notifications.sinks[0].token",
            "put it there and name its key in secret_env (webhook) or token_env (ntfy)",
        ),
        (
            "    app: {jwt_secret: x}\n",
            "environments.production.app.jwt_secret",
            "put it there under the name JWT_SECRET and list it in app.required_env "
            "(the app receives every key of .env.production)",
        ),
    ],
    ids=["database", "registry", "github", "ntfy", "app"],
)
def test_a_secret_written_in_shipyard_yml_is_sent_to_the_env_file(
    tmp_path: Path, written: str, key_path: str, where: str
) -> None:
    path = write(tmp_path, BadConfig("secret", VALID + written, "", "", environment="production"))
    with pytest.raises(ConfigError) as caught:
        load_config(path, "production", process_env={})
    assert len(caught.value.issues) == 1, caught.value.issues
    issue = caught.value.issues[0]
    assert (issue.line, issue.key_path) == (23, key_path)
    key = key_path.rsplit(".", 1)[-1]
    assert issue.message == (
        f"{key!r} is an unknown key: secrets belong in the env file .env.production, "
        f"not in shipyard.yml; {where}"
    )


def test_valid_config_resolves_environment_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, BadConfig("ok", VALID, "", "", environment="production"))
    config = load_config(path, "production", process_env={})
    assert config.proxy.http_port == 18081
    assert config.environment.name == "production"
    assert isinstance(config.build, GoBuild)
    assert config.database is not None
    assert config.database.extensions == ["postgis", "pg_trgm", "pgcrypto"]
    assert config.environment.env_file == (tmp_path / ".env.production").resolve()


def test_never_falls_back_to_another_environments_env_file(tmp_path: Path) -> None:
    path = write(tmp_path, BadConfig("ok", VALID, "", ""))  # writes .env.development only
    with pytest.raises(ConfigError) as caught:
        load_config(path, "production", process_env={})
    assert ".env.production" in str(caught.value)


def test_interpolation_from_process_env_and_env_file(tmp_path: Path) -> None:
    text = VALID.replace("http_port: 18080", "http_port: ${PORT:-9}").replace(
        "image: shipyard-local/postgres:17", "image: ${DB_IMAGE}"
    )
    path = write(tmp_path, BadConfig("ok", text, "", ""))
    (tmp_path / ".env.development").write_text(ENV_FILE + "DB_IMAGE=from-env-file:1\n")
    config = load_config(path, "development", process_env={"PORT": "4242"})
    assert config.proxy.http_port == 4242
    assert config.database is not None
    assert config.database.image == "from-env-file:1"


def test_the_pinned_proxy_subnet_is_given_to_the_app_as_shipyard_proxy_cidr(
    tmp_path: Path,
) -> None:
    """`${SHIPYARD_PROXY_CIDR}` is `proxy.subnet` as the environment merges it (itself
    interpolated), never a value of that name from the environment."""
    text = (
        VALID.replace(
            "  required_env: [JWT_SECRET]\n",
            "  required_env: [JWT_SECRET]\n  env:\n    TRUSTED_PROXY_CIDRS: ${SHIPYARD_PROXY_CIDR}\n",
        )
        .replace("  http_port: 18080\n", "  http_port: 18080\n  subnet: ${SUBNET}\n")
        .replace("      http_port: 18081\n", "      http_port: 18081\n      subnet: 10.9.0.0/16\n")
    )
    path = write(tmp_path, BadConfig("ok", text, "", ""))
    (tmp_path / ".env.development").write_text(ENV_FILE + "SUBNET=192.168.77.0/24\n")
    (tmp_path / ".env.production").write_text(ENV_FILE)
    spoof = {"SHIPYARD_PROXY_CIDR": "0.0.0.0/0", "SUBNET": "10.201.7.0/24"}
    development = load_config(path, "development", process_env=spoof)
    assert development.proxy.subnet == "10.201.7.0/24"  # the process environment wins, as always
    assert development.app.env["TRUSTED_PROXY_CIDRS"] == "10.201.7.0/24"
    production = load_config(path, "production", process_env=spoof)
    assert production.app.env["TRUSTED_PROXY_CIDRS"] == "10.9.0.0/16"


@pytest.mark.parametrize(
    ("written", "error"),
    [
        ("${PORT", "${PORT is not closed"),
        ("${PORT:-8080", "${PORT is not closed"),
        ("x-${", "${ is not closed"),
        ("$${PORT", None),
        ("${PORT}-${X", "${X is not closed"),
    ],
)
def test_an_unclosed_variable_is_an_error(tmp_path: Path, written: str, error: str | None) -> None:
    yaml = _with(
        'example.com/shop/cmd.Version: "{version}"', f'example.com/shop/cmd.Version: "{written}"'
    )
    path = write(tmp_path, BadConfig("unclosed", yaml, "", ""))
    if error is None:
        config = load_config(path, "development", process_env={})
        assert isinstance(config.build, GoBuild)
        assert config.build.ldflags["example.com/shop/cmd.Version"] == "${PORT"
        return
    with pytest.raises(ConfigError) as caught:
        load_config(path, "development", process_env={"PORT": "1"})
    assert [str(i) for i in caught.value.issues] == [
        f"{path}:9:5 build.ldflags.example.com/shop/cmd.Version: {error}: write ${{NAME}} or ${{NAME:-default}} ($$ for a literal $)"
    ]


def test_an_extension_no_image_ships_is_a_warning(tmp_path: Path) -> None:
    yaml = _with(
        "  user: shop\n", '  user: shop\n  extensions: [postgis, postgist, pg_cron, "${EXT}"]\n'
    )
    path = write(tmp_path, BadConfig("extensions", yaml, "", ""))
    config = load_config(path, "development", process_env={"EXT": "my_own_ext"})
    assert config.database is not None
    assert config.database.extensions == ["postgis", "postgist", "pg_cron", "my_own_ext"]
    fine = "fine if the image is a custom one that ships it"
    assert [str(w) for w in config.warnings] == [
        f"{path}:13:25 database.extensions[1]: 'postgist' is not an extension that PostgreSQL, "
        f"PostGIS or pgvector ship (did you mean 'postgis'?); {fine}",
        f"{path}:13:44 database.extensions[3]: the value from ${{EXT}} is not an extension that "
        f"PostgreSQL, PostGIS or pgvector ship; {fine}",
    ]


@pytest.mark.parametrize(
    ("image", "extensions", "refused"),
    [
        ("postgis/postgis:17-3.5", "[postgis, vector, pg_trgm]", ["vector"]),
        ("docker.io/postgis/postgis:16-3.4@sha256:" + "0" * 64, "[vector]", ["vector"]),
        ("pgvector/pgvector:pg17", "[postgis, vector, pgcrypto]", ["postgis"]),
        ("postgres:17", "[postgis, vector, plpython3u]", ["postgis", "vector"]),
        ("postgis/postgis:17-3.5", "[postgis, postgis_topology, pg_trgm, pgcrypto]", []),
        ("shipyard-local/postgres:17", "[postgis, vector]", []),  # not a known image: trusted
    ],
)
def test_an_extension_the_database_image_is_known_to_lack_is_refused(
    tmp_path: Path, image: str, extensions: str, refused: list[str]
) -> None:
    """CREATE EXTENSION would fail after the database started: the config fails first, at the
    extension, naming the image and what to do."""
    yaml = _with(
        "  image: shipyard-local/postgres:17\n",
        f"  image: {image}\n  extensions: {extensions}\n",
    )
    path = write(tmp_path, BadConfig("image", yaml, "", ""))
    if not refused:
        load_config(path, "development", process_env={})
        return
    with pytest.raises(ConfigError) as caught:
        load_config(path, "development", process_env={})
    messages = [str(i) for i in caught.value.issues]
    assert len(messages) == len(refused), messages
    for name, message in zip(refused, messages, strict=True):
        assert f"database.extensions[{extensions.strip('[]').split(', ').index(name)}]" in message
        assert f"{name!r} is not in the {image} image" in message
        assert "A database image with PostGIS and pgvector" in message


def test_the_default_database_image_ships_the_default_extensions(tmp_path: Path) -> None:
    yaml = _with("  image: shipyard-local/postgres:17\n", "")
    config = load_config(
        write(tmp_path, BadConfig("d", yaml, "", "")), "development", process_env={}
    )
    assert config.database is not None
    assert config.database.image == "postgis/postgis:17-3.5"
    assert config.database.extensions == ["postgis", "pg_trgm", "pgcrypto"]


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("API_TOKEN: abc", "'API_TOKEN' is named like a secret"),
        ("DATABASE_URL: postgres://shop@db/shop", "'DATABASE_URL' is named like a secret"),
        (
            "SESSION_SEED: q8Vx2LrT9mKd4NfZ",
            "'SESSION_SEED' has a value that looks like a generated",
        ),
        ("UPSTREAM: https://ops:hunter2@upstream.example", "'UPSTREAM' holds a password in a URL"),
        ("JWT_SECRET: ${JWT_SECRET}", None),
        ("DATABASE_URL: postgres://shop:${DB_PASSWORD}@db/shop", None),
        ("ORIGINS: https://events.example.com", None),
        ("LOG_FORMAT: json", None),
        ("GREETING: a sentence with spaces in it", None),
    ],
)
def test_a_secret_written_in_app_env_is_a_warning(
    tmp_path: Path, entry: str, why: str | None
) -> None:
    yaml = _with(
        "  required_env: [JWT_SECRET]\n", f"  required_env: [JWT_SECRET]\n  env:\n    {entry}\n"
    )
    path = write(tmp_path, BadConfig("app-env", yaml, "", ""))
    config = load_config(path, "development", process_env={"DB_PASSWORD": "pw"})
    warnings = [str(w) for w in config.warnings]
    if why is None:
        assert warnings == []
        return
    key = entry.split(":", maxsplit=1)[0]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"{path}:6:5 app.env.{key}: {why}")
    assert warnings[0].endswith(
        ": move it to the env file .env.development, which the app receives whole "
        "(shipyard.yml is committed, and only the env file's values are masked)"
    )


def test_a_secret_written_in_an_environments_app_env_is_located_there(tmp_path: Path) -> None:
    yaml = VALID + "    app:\n      env: {STRIPE_KEY: sk_live_abc}\n"
    path = write(tmp_path, BadConfig("app-env", yaml, "", "", environment="production"))
    config = load_config(path, "production", process_env={})
    assert [(w.line, w.key_path) for w in config.warnings] == [
        (24, "environments.production.app.env.STRIPE_KEY")
    ]
    assert "move it to the env file .env.production" in config.warnings[0].message


def test_warnings_come_with_the_errors(tmp_path: Path) -> None:
    yaml = _with("  port: 8080\n", "  port: 0\n  env: {API_TOKEN: abc}\n").replace(
        "  user: shop\n", "  user: shop\n  extensions: [postgist]\n"
    )
    path = write(tmp_path, BadConfig("both", yaml, "", ""))
    with pytest.raises(ConfigError) as caught:
        load_config(path, "development", process_env={})
    assert [i.key_path for i in caught.value.issues] == ["app.port"]
    assert [w.key_path for w in caught.value.warnings] == [
        "app.env.API_TOKEN",
        "database.extensions[0]",
    ]


def test_env_file_problems_come_with_every_other_problem(tmp_path: Path) -> None:
    yaml = (
        _with("port: 8080", "port: 70000")
        .replace("  user: shop\n", "  user: shop\n  ready_timeout: soon\n")
        .replace("proxy:\n", "health: {passes: 0}\nproxy:\n", 1)
        + "notifications:\n  sinks:\n    - {kind: webhook, url: 'http://h/', secret_env: HOOK_SECRET}\n"
        + "  queue_size: 0\n"
    )
    path = write(tmp_path, BadConfig("all", yaml, "", "", env_file="OTHER=1\n"))
    with pytest.raises(ConfigError) as caught:
        load_config(path, "development", process_env={})
    found = {issue.key_path: issue.message for issue in caught.value.issues}
    assert len(found) == len(caught.value.issues)
    expected = {
        "app.port": "Input should be less than or equal to 65535",
        "database.ready_timeout": "expected a duration like 10s",
        "health.passes": "Input should be greater than or equal to 1",
        "notifications.queue_size": "Input should be greater than or equal to 1",
        "database.password_env": "POSTGRES_PASSWORD must be set in ",
        "app.required_env[0]": "JWT_SECRET is required by the app but not set in ",
        "notifications.sinks[0].secret_env": "HOOK_SECRET is not set in the env file",
    }
    assert sorted(found) == sorted(expected)
    for key_path, message in expected.items():
        assert found[key_path].startswith(message), found[key_path]


def test_secrets_are_registered_for_masking(tmp_path: Path) -> None:
    path = write(tmp_path, BadConfig("ok", VALID, "", ""))
    config = load_config(path, "development", process_env={})
    assert "0123456789abcdef" not in config.masker("jwt is 0123456789abcdef0123456789abcdef")
    assert "s3cret-password" not in config.masker("postgres://shop:s3cret-password@db/shop")


# A value ``${VAR}`` fills in is never quoted in a message, from the env file or the environment,
# secret-looking or not; the message names the variable instead.
GENERATED_SECRET = "q8Vx2LrT9mKd4-NfZ7wPb3HcJ6sYg1QeA"
SHELL_VALUE = "eighty"
NOTIFICATIONS = "notifications:\n  sinks:\n    - kind: ntfy\n      topic: ops\n"


def _with(old: str, new: str) -> str:
    assert old in VALID, old
    return VALID.replace(old, new, 1)


@pytest.mark.parametrize(
    ("yaml", "location", "named", "environment"),
    [
        (
            _with("port: 8080", "port: ${JWT_SECRET}"),
            "3:3 app.port",
            "value from ${JWT_SECRET}",
            "development",
        ),
        (
            _with("  port: 8080\n", "  port: 8080\n  stop_grace_period: ${JWT_SECRET}\n"),
            "4:3 app.stop_grace_period",
            "value from ${JWT_SECRET}",
            "development",
        ),
        (
            _with("required_env: [JWT_SECRET]", 'required_env: [JWT_SECRET, "${JWT_SECRET}"]'),
            "4:3 app.required_env",
            "value from ${JWT_SECRET}",
            "development",
        ),
        (
            _with("  user: shop\n", '  user: shop\n  extensions: ["x-${JWT_SECRET}"]\n'),
            "13:3 database.extensions",
            "value from ${JWT_SECRET}",
            "development",
        ),
        (
            _with("      http_port: 18081", "      http_port: ${JWT_SECRET}"),
            "22:7 environments.production.proxy.http_port",
            "value from ${JWT_SECRET}",
            "production",
        ),
        (
            _with("port: 8080", "port: ${SOME_ENV_VAR}"),
            "3:3 app.port",
            "value from ${SOME_ENV_VAR}",
            "development",
        ),
        (
            VALID + NOTIFICATIONS + '      events: ["${SOME_ENV_VAR}"]\n',
            "27:7 notifications.sinks[0].events",
            "value from ${SOME_ENV_VAR}",
            "development",
        ),
        (
            VALID + 'providers:\n  ssh:\n    options: ["${SOME_ENV_VAR}"]\n',
            "25:5 providers.ssh.options",
            "value from ${SOME_ENV_VAR}",
            "development",
        ),
        (
            VALID
            + NOTIFICATIONS
            + "      name: ${SOME_ENV_VAR}\n"
            + "    - kind: ntfy\n      topic: ops\n      name: ${SOME_ENV_VAR}\n",
            "23:1 notifications",
            "value from ${SOME_ENV_VAR}",
            "development",
        ),
        (
            _with("required_env: [JWT_SECRET]", 'required_env: [JWT_SECRET, "${SOME_ENV_VAR}"]'),
            "4:30 app.required_env[1]",
            "the variable named by ${SOME_ENV_VAR} is required by the app",
            "development",
        ),
        (
            VALID + NOTIFICATIONS + "      token_env: ${SOME_ENV_VAR}\n",
            "27:7 notifications.sinks[0].token_env",
            "the variable named by ${SOME_ENV_VAR} is not set",
            "development",
        ),
    ],
    ids=[
        "int-from-env-file",
        "duration-from-env-file",
        "env-name-from-env-file",
        "part-of-a-string-from-env-file",
        "override-from-env-file",
        "int-from-process-env",
        "event-kind-from-process-env",
        "ssh-option-from-process-env",
        "duplicate-sink-names-from-process-env",
        "required-env-name-from-process-env",
        "token-env-name-from-process-env",
    ],
)
def test_interpolated_values_are_never_quoted_in_messages(
    tmp_path: Path, yaml: str, location: str, named: str, environment: str
) -> None:
    env_file = ENV_FILE.replace("0123456789abcdef0123456789abcdef", GENERATED_SECRET)
    path = write(tmp_path, BadConfig("interpolated", yaml, "", "", env_file, environment))
    with pytest.raises(ConfigError) as caught:
        load_config(path, environment, process_env={"SOME_ENV_VAR": SHELL_VALUE})
    texts = [str(caught.value), *(str(issue) for issue in caught.value.issues)]
    for value in (GENERATED_SECRET, SHELL_VALUE):
        assert not [text for text in texts if value in text], texts
    located = [text for text in texts[1:] if text.startswith(f"{path}:{location}: ")]
    assert located, texts
    assert all(named in text for text in located), located


def test_values_written_in_the_file_are_still_quoted(tmp_path: Path) -> None:
    yaml = _with("port: 8080", "port: ${SOME_ENV_VAR}").replace(
        "required_env: [JWT_SECRET]", "required_env: [JWT_SECRET, not-a-name]"
    )
    path = write(tmp_path, BadConfig("literal", yaml, "", ""))
    with pytest.raises(ConfigError) as caught:
        load_config(path, "development", process_env={"SOME_ENV_VAR": SHELL_VALUE})
    messages = [str(issue) for issue in caught.value.issues]
    assert (
        f"{path}:4:3 app.required_env: 'not-a-name' is not a valid environment variable name"
        in messages
    )
    assert SHELL_VALUE not in " ".join(messages)


def test_merge_keys_bring_values_located_where_they_are_written(tmp_path: Path) -> None:
    yaml = _with("database:\n", "database: &database\n").replace(
        "proxy:\n",
        "providers:\n  shared: &shared\n    interval: 2s\nhealth:\n  <<: *shared\nproxy:\n",
        1,
    ) + ("    database:\n      <<: *database\n      name: other\n")
    path = write(tmp_path, BadConfig("merge", yaml, "", "", environment="production"))
    config = load_config(path, "production", process_env={})
    assert config.database is not None
    assert (config.database.name, config.database.user) == ("other", "shop")
    assert config.health.interval == 2.0

    path.write_text(yaml.replace("interval: 2s", "interval: soon"), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, "production", process_env={})
    lines = [str(issue) for issue in caught.value.issues]
    written = yaml.splitlines().index("    interval: 2s") + 1
    assert any(line.startswith(f"{path}:{written}:5 health.interval: ") for line in lines), lines


def test_aliases_within_the_bound_are_expanded(tmp_path: Path) -> None:
    yaml = _with("required_env: [JWT_SECRET]", "required_env: &required [JWT_SECRET]") + (
        "hooks:\n  before_deploy:\n"
        + "".join(f"    - {{argv: *required, name: hook-{i}}}\n" for i in range(100))
    )
    path = write(tmp_path, BadConfig("aliases", yaml, "", ""))
    config = load_config(path, "development", process_env={})
    assert [hook.argv for hook in config.hooks.before_deploy] == [["JWT_SECRET"]] * 100


def _entries(n: int, *, valid: bool) -> str:
    """A config with ``n`` of everything: env vars (filled in by ``${X}``), health checks and,
    unless ``valid``, as many unknown keys, refused numbers and refused filled-in values."""
    env = "".join(f"    TEXT_{i}: ${{X}}-{i}\n" for i in range(n))
    checks = "".join(f"    - {{kind: http, path: '/${{X}}{i}'}}\n" for i in range(n))
    unknown = ""
    if not valid:
        env += "".join(f"    NUMBER_{i}: {i}\n" for i in range(n))
        checks = checks.replace("'/${X}", "'${X}")  # a path must start with /
        unknown = "".join(f"  unknown_{i}: {i}\n" for i in range(n))
    return _with("  port: 8080\n", "  port: 8080\n" + unknown + "  env:\n" + env).replace(
        "proxy:\n", "health:\n  checks:\n" + checks + "proxy:\n", 1
    )


def _work(tmp_path: Path, yaml: str) -> tuple[int, int]:
    """Python calls made by load_config on ``yaml`` (its work, counted: no clock involved), and
    the number of issues it found."""
    tmp_path.mkdir()
    path = write(tmp_path, BadConfig("large", yaml, "", ""))
    profile = cProfile.Profile()
    issues = 0
    profile.enable()
    try:
        load_config(path, "development", process_env={"X": "x"})
    except ConfigError as exc:
        issues = len(exc.issues)
    finally:
        profile.disable()
    return pstats.Stats(profile).total_calls, issues


@pytest.mark.parametrize("valid", [True, False], ids=["accepted", "rejected"])
def test_work_grows_linearly_with_the_size_of_the_config(tmp_path: Path, valid: bool) -> None:
    small, large = _entries(100, valid=valid), _entries(1000, valid=valid)
    assert 9 * len(small) < len(large) < 11 * len(small)
    small_work, small_issues = _work(tmp_path / "small", small)
    large_work, large_issues = _work(tmp_path / "large", large)
    # one issue per unknown key, per number and per health check path
    assert (small_issues, large_issues) == ((0, 0) if valid else (300, 3000))
    ratio = large_work / small_work
    assert ratio < 12, f"ten times the config took {ratio:.1f} times the work"


@pytest.mark.parametrize(
    ("text", "seconds"), [("10s", 10.0), ("500ms", 0.5), ("5m", 300.0), ("1h", 3600.0), (3, 3.0)]
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


yaml_text = st.one_of(
    st.text(max_size=200),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.sampled_from(["app", "build", "name", "kind", "environments", "target", "x"]),
                children,
                max_size=4,
            )
        ),
        max_leaves=20,
    ).map(repr),
)


@settings(
    max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(yaml_text)
def test_any_input_gives_config_error_or_config(tmp_path: Path, text: str) -> None:
    path = tmp_path / "shipyard.yml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path, "development", process_env={})
    except ConfigError as exc:
        assert exc.issues


ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("example", "environment"),
    [
        ("events-api", "development"),
        ("events-api", "production"),
        ("togather", "local"),
        ("togather", "staging"),
        ("togather", "production"),
    ],
)
def test_shipped_examples_are_valid(tmp_path: Path, example: str, environment: str) -> None:
    source = ROOT / "examples" / example
    (tmp_path / "shipyard.yml").write_text((source / "shipyard.yml").read_text())
    env_lines = (source / ".env.example").read_text()
    (tmp_path / f".env.{environment}").write_text(env_lines)
    config = load_config(tmp_path / "shipyard.yml", environment, process_env={})
    assert config.app.name == example
    assert config.database is not None
    assert {"postgis", "pg_trgm"} <= set(config.database.extensions)
    assert config.warnings == ()


def test_readme_reference_matches_the_models() -> None:
    from shipyard.config import reference_markdown  # noqa: PLC0415

    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- reference:start -->") + len("<!-- reference:start -->")
    end = readme.index("<!-- reference:end -->")
    assert readme[start:end].strip() == reference_markdown().strip(), (
        "README reference is stale: regenerate it with `shipyard schema --markdown`"
    )


def test_check_rejects_world_readable_and_tracked_env_files(tmp_path: Path) -> None:
    import subprocess  # noqa: PLC0415

    from shipyard.deploy._checks import _file_problems  # noqa: PLC0415
    from shipyard.hosts import LocalHost  # noqa: PLC0415

    path = write(tmp_path, BadConfig("ok", VALID, "", ""))
    env = tmp_path / ".env.development"
    config = load_config(path, "development", process_env={})

    def problems() -> list[str]:
        return [p.message for p in _file_problems(config, LocalHost())]

    assert not [p for p in problems() if ".env.development" in p]
    env.chmod(0o644)
    assert any("world-readable" in p for p in problems())
    env.chmod(0o600)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "add", "-f", ".env.development"], check=True)
    assert any("tracked by git" in p for p in problems())


def test_a_database_url_is_held_to_what_connects_with_it() -> None:
    from shipyard.config import database_url_problem  # noqa: PLC0415

    good = "postgres://app:p%40ss@db.example.net:25060/events?sslmode=require"
    assert database_url_problem(good) is None
    # A cloud's tasks may reach it through a socket, or log in without a password (IAM):
    socket = "postgres://app@/events?host=/cloudsql/p:r:i"
    assert database_url_problem(socket, login=False) is None
    # shipyard logs in itself, over TCP from a container, when a host runs the environment.
    assert "socket directory" in str(database_url_problem(socket.replace("app@", "app:pw@")))
    assert "without password" in str(database_url_problem(socket))
    assert database_url_problem("postgres://app:pw@db:x/events") == "its port is not a number"
    refused = database_url_problem("postgresql://app:secret-pw@db.example.net/")
    assert refused is not None and "without database" in refused and "secret-pw" not in refused
