"""PostgreSQL extension names that images ship: ``database.extensions`` is checked against them.

A name outside this list is most likely a typo (``postgist``) and gets a warning from ``check``;
never an error, because a custom image may ship more.

Where the names come from:

- PostgreSQL's own modules that are extensions (``CREATE EXTENSION``): Appendix F of the manual,
  "Additional Supplied Modules and Extensions", versions 13 to 17 (``adminpack`` and
  ``old_snapshot`` were removed in 17), with the ``spi`` module's four extensions and the
  transforms for PL/Perl and PL/Python; plus the procedural languages of the core distribution;
- the PostGIS family as the postgis/postgis images ship it (PostGIS 3.x), and what is often
  built next to it (pgRouting, H3, pointcloud, MobilityDB);
- pgvector, whose extension is named ``vector``;
- extensions common in PostgreSQL images and managed services (TimescaleDB, pg_cron, pg_partman,
  pgaudit, pg_repack, Citus, Apache AGE, PostgreSQL Anonymizer's ``anon``, …).
"""

from __future__ import annotations

import difflib

CONTRIB = frozenset(
    {
        "adminpack",
        "amcheck",
        "autoinc",
        "bloom",
        "bool_plperl",
        "bool_plperlu",
        "btree_gin",
        "btree_gist",
        "citext",
        "cube",
        "dblink",
        "dict_int",
        "dict_xsyn",
        "earthdistance",
        "file_fdw",
        "fuzzystrmatch",
        "hstore",
        "hstore_plperl",
        "hstore_plperlu",
        "hstore_plpython3u",
        "insert_username",
        "intagg",
        "intarray",
        "isn",
        "jsonb_plperl",
        "jsonb_plperlu",
        "jsonb_plpython3u",
        "lo",
        "ltree",
        "ltree_plpython3u",
        "moddatetime",
        "old_snapshot",
        "pageinspect",
        "pg_buffercache",
        "pg_freespacemap",
        "pg_prewarm",
        "pg_stat_statements",
        "pg_surgery",
        "pg_trgm",
        "pg_visibility",
        "pg_walinspect",
        "pgcrypto",
        "pgrowlocks",
        "pgstattuple",
        "postgres_fdw",
        "refint",
        "seg",
        "sslinfo",
        "tablefunc",
        "tcn",
        "tsm_system_rows",
        "tsm_system_time",
        "unaccent",
        "uuid-ossp",
        "xml2",
    }
)
LANGUAGES = frozenset({"plpgsql", "plperl", "plperlu", "plpython3u", "pltcl", "pltclu"})
POSTGIS = frozenset(
    {
        "address_standardizer",
        "address_standardizer_data_us",
        "h3",
        "h3_postgis",
        "mobilitydb",
        "pgrouting",
        "pointcloud",
        "pointcloud_postgis",
        "postgis",
        "postgis_raster",
        "postgis_sfcgal",
        "postgis_tiger_geocoder",
        "postgis_topology",
    }
)
COMMON = frozenset(
    {
        "age",
        "anon",
        "citus",
        "hll",
        "hypopg",
        "ip4r",
        "orafce",
        "pg_bigm",
        "pg_cron",
        "pg_hint_plan",
        "pg_ivm",
        "pg_partman",
        "pg_qualstats",
        "pg_repack",
        "pg_squeeze",
        "pg_stat_kcache",
        "pg_uuidv7",
        "pg_wait_sampling",
        "pgaudit",
        "pgjwt",
        "pglogical",
        "pgmq",
        "pgroonga",
        "pgtap",
        "plv8",
        "rum",
        "semver",
        "timescaledb",
        "timescaledb_toolkit",
        "vector",
        "vectorscale",
    }
)
KNOWN_EXTENSIONS = CONTRIB | LANGUAGES | POSTGIS | COMMON


def known_extension(name: str) -> bool:
    return name in KNOWN_EXTENSIONS


def nearest_extension(name: str) -> str | None:
    """The known extension name closest to ``name`` (a likely correction of a typo), if any."""
    close = difflib.get_close_matches(name, sorted(KNOWN_EXTENSIONS), n=1, cutoff=0.75)
    return close[0] if close else None


# What the images most configs name ship beyond PostgreSQL's own modules (from their Dockerfiles):
# the postgis/postgis images install PostGIS 3 (postgresql-<major>-postgis-3) and nothing else;
# pgvector/pgvector installs pgvector; the official postgres image neither. An extension of the
# PostGIS family or of the common list that the named image lacks fails before anything starts;
# PostgreSQL's contrib modules and languages never do (a custom build may leave some out).
_POSTGIS_IMAGE = frozenset(
    {
        "postgis",
        "postgis_raster",
        "postgis_sfcgal",
        "postgis_tiger_geocoder",
        "postgis_topology",
        "address_standardizer",
        "address_standardizer_data_us",
    }
)
_IMAGE_FAMILIES: dict[str, tuple[str, frozenset[str]]] = {
    "postgis/postgis": ("PostGIS", _POSTGIS_IMAGE),
    "pgvector/pgvector": ("pgvector", frozenset({"vector"})),
    "postgres": ("no extension beyond", frozenset()),
}


def image_repository(image: str) -> str:
    """``docker.io/library/postgres:17@sha256:…`` → ``postgres``."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    for prefix in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        name = name.removeprefix(prefix)
    return name.removeprefix("library/")


def missing_from_image(image: str, names: list[str]) -> tuple[str, list[str]] | None:
    """For an image of a known family: what it ships (in words) and which of ``names`` it lacks."""
    family = _IMAGE_FAMILIES.get(image_repository(image))
    if family is None:
        return None
    words, ships = family
    missing = [n for n in names if n in (POSTGIS | COMMON) and n not in ships]
    return (words, missing) if missing else None
