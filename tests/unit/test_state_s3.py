"""An environment's state kept in S3 (``state._s3``): the same records as on a host, against the
AWS stand-in (moto's server on loopback); errors S3 answers with, from botocore's Stubber. The
account's default bucket: created by the first write as an operator would, never by a read."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from shipyard import aws
from shipyard.config import Config, load_config
from shipyard.errors import HostUnreachable, ShipyardError, StateError
from shipyard.hosts import CommandResult
from shipyard.providers.aws import AwsProvider, AwsSettings, state_store
from shipyard.providers.aws._environment import state_location
from shipyard.state import Current, HistoryEntry, Intent, Lock, Release, StateStore
from shipyard.state._s3 import DefaultBucket, S3State, s3_client
from tests.aws_standin import CREDENTIALS, REGION, client, moto_server, moto_with_bucket
from tests.bad_configs import ENV_FILE, VALID
from tests.fakes import FakeHost

BUCKET = "shipyard-state-records"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_with_bucket(BUCKET) as url:
        yield url


def _state(endpoint: str, environment: str, app: str = "shop") -> S3State:
    return S3State(client("s3", endpoint), BUCKET, PurePosixPath("shipyard", app, environment))


def _release(release_id: str) -> Release:
    return Release(
        id=release_id, version="1.0.0", commit="c" * 40, image=f"shop:{release_id}",
        image_id="sha256:1", slot="blue", migration_version=3, created_at="2026-12-04T00:00:00Z",
        deployed_by="op@laptop",
    )  # fmt: skip


def test_the_records_round_trip_through_the_bucket(endpoint: str) -> None:
    store = StateStore(_state(endpoint, "records"))
    assert store.current() is None and store.releases() == [] and store.history() == []
    store.set_current(Current(slot="blue", release_id="r1", switched_at="t"))
    store.save_releases([_release("r1"), _release("r2")])
    entry = HistoryEntry(
        deployment_id="d1", action="deploy", result="succeeded", version="1.0.0", commit="c",
        slot="blue", started_at="2026-12-04T00:00:00Z", duration_s=1.0, by="op@laptop",
    )  # fmt: skip
    store.append_history(entry)
    store.append_history(entry)
    store.write_intent(
        Intent(
            deployment_id="d2", action="deploy", release=_release("r2"), previous=None,
            step="start", by="op@laptop", started_at="t", updated_at="t",
        )
    )  # fmt: skip
    store.backend.write("logs/20261204T000000-aaaa.jsonl", b"{}\n")
    store.backend.write("logs/20261203T000000-bbbb.jsonl", b"{}\n")

    again = StateStore(_state(endpoint, "records"))  # another operator's machine reads the same
    assert again.current() == Current(slot="blue", release_id="r1", switched_at="t")
    assert [r.id for r in again.releases()] == ["r1", "r2"]
    assert again.history() == [entry, entry]
    assert again.intent() is not None and again.intent().deployment_id == "d2"  # type: ignore[union-attr]
    assert again.log_ids() == ["20261203T000000-bbbb", "20261204T000000-aaaa"]
    assert again.log("20261204T000000-aaaa") == "{}\n"
    again.clear_intent()
    assert store.intent() is None
    assert (
        again.backend.where("current.json") == f"s3://{BUCKET}/shipyard/shop/records/current.json"
    )


def test_removing_an_environment_leaves_every_other_object(endpoint: str) -> None:
    gone, other = _state(endpoint, "gone"), _state(endpoint, "kept")
    for name in ("current.json", "logs/a.jsonl", "snapshots/s1.json", "snapshots/s2.json"):
        gone.write(name, b"x")
    other.write("current.json", b"y")
    neighbour = S3State(client("s3", endpoint), BUCKET, PurePosixPath("shipyard", "shop", "gone2"))
    neighbour.write("current.json", b"z")  # a prefix of the same start is another environment

    gone.remove_all(keep="snapshots")
    assert gone.read("current.json") is None and gone.names("logs") == []
    assert sorted(gone.names("snapshots")) == ["s1.json", "s2.json"]
    gone.remove_all()
    assert gone.names("snapshots") == []
    assert other.read("current.json") == b"y" and neighbour.read("current.json") == b"z"


def test_a_takeover_keeps_the_stale_record_and_a_stale_token_refreshes_nothing(
    endpoint: str,
) -> None:
    state = _state(endpoint, "takeover")
    first = state.lock_create("first", b'{"deployment_id": "first"}')
    assert first is not None
    assert state.lock_create("second", b'{"deployment_id": "second"}') is None
    second = state.lock_take_over(first, "first", "second", b'{"deployment_id": "second"}')
    assert second is not None
    assert state.read("lock.stale-first.json") == b'{"deployment_id": "first"}'
    # The first holder's heartbeat with its old token is refused: S3 tells it lost the lock.
    assert state.lock_refresh(first, b'{"deployment_id": "first"}') is None
    assert state.lock_take_over(first, "first", "third", b"{}") is None  # already taken over
    state.lock_delete(first)  # not its lock any more: nothing removed
    assert state.lock_read() == (b'{"deployment_id": "second"}', second)
    state.lock_prune(0)  # kept records older than now: the stale one goes, the lock stays
    assert state.read("lock.stale-first.json") is None
    assert state.lock_read() is not None
    state.lock_delete(second)
    assert state.lock_read() is None


def test_a_heartbeat_after_a_takeover_fences_the_old_holder(endpoint: str) -> None:
    store = StateStore(_state(endpoint, "fenced"))
    holder = Lock(store, "slow", "deploy", ttl=60)
    assert holder.try_acquire()
    holder._stop.set()
    holder._beat.join()  # type: ignore[union-attr]
    store.backend.lock_delete(None)  # someone broke it (--force) and another deploy took it
    taker = Lock(store, "other", "deploy", ttl=60)
    assert taker.try_acquire()
    assert store.backend.lock_refresh(holder._token or "", holder._record()) is None
    with pytest.raises(Exception, match="belongs to deploy by"):
        holder.ensure_held()
    taker.release()


def test_a_missing_bucket_is_named() -> None:
    with moto_server() as url:
        state = S3State(client("s3", url), "no-such-bucket-here", PurePosixPath("shipyard/a/b"))
        with pytest.raises(StateError) as caught:
            state.read("current.json")
    assert "s3://no-such-bucket-here: no such bucket" in caught.value.message
    assert caught.value.hint


def test_an_unreachable_endpoint_is_the_hosts_exit_code() -> None:
    unreachable = client(
        "s3", "http://127.0.0.1:1", retries={"total_max_attempts": 1}, connect_timeout=2
    )
    state = S3State(unreachable, BUCKET, PurePosixPath("shipyard/a/b"))
    with pytest.raises(HostUnreachable, match=r"s3://shipyard-state-records/shipyard/a/b/current"):
        state.read("current.json")


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("SlowDown", 503, "AWS kept throttling the request through every retry (SlowDown"),
        ("AccessDenied", 403, "access denied for s3:GetObject"),
    ],
)
def test_errors_s3_answers_with_say_what_to_do(code: str, status: int, expected: str) -> None:
    s3 = s3_client(region=REGION, endpoint_url="http://127.0.0.1:1")
    state = S3State(s3, BUCKET, PurePosixPath("shipyard/a/b"))
    with Stubber(s3) as stub:
        stub.add_client_error("get_object", service_error_code=code, http_status_code=status)
        with pytest.raises(ShipyardError) as caught:
            state.read("current.json")
    assert expected in caught.value.message
    assert "s3://shipyard-state-records/shipyard/a/b/current.json" in caught.value.message
    assert caught.value.hint


# -- the account's default bucket ----------------------------------------------------------------
ACCOUNT = "123456789012"  # moto's account


def _on(region: str, service: str, endpoint: str) -> Any:
    """A client of the stand-in in ``region`` (``client`` is in ``REGION``)."""
    return boto3.client(service, endpoint_url=endpoint, region_name=region, **CREDENTIALS)


def _default(endpoint: str, region: str = REGION, environment: str = "production") -> S3State:
    """An environment's state in the account's default bucket, as ``state_store`` makes it."""
    return S3State(
        _on(region, "s3", endpoint),
        DefaultBucket(_on(region, "sts", endpoint), region),
        PurePosixPath("shipyard", "shop", environment),
    )


def _buckets(endpoint: str) -> list[str]:
    return [b["Name"] for b in client("s3", endpoint).list_buckets()["Buckets"]]


@pytest.mark.parametrize(("region", "location"), [(REGION, REGION), ("us-east-1", None)])
def test_the_first_lock_creates_the_default_bucket_as_a_careful_operator_would(
    region: str, location: str | None
) -> None:
    with moto_server() as url:
        store = StateStore(_default(url, region))
        lock = Lock(store, "first", "deploy", ttl=60)
        lock.acquire()
        bucket = f"shipyard-state-{ACCOUNT}-{region}"
        assert _buckets(url) == [bucket]
        s3 = _on(region, "s3", url)
        # Outside us-east-1 the bucket is made in the environment's region (LocationConstraint).
        assert s3.get_bucket_location(Bucket=bucket).get("LocationConstraint") == location
        assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "IgnorePublicAcls": True,
            "BlockPublicPolicy": True, "RestrictPublicBuckets": True,
        }  # fmt: skip
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
        assert rules["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [
            {"Key": "shipyard:managed", "Value": "true"}
        ]

        store.set_current(Current(slot="blue", release_id="r1", switched_at="t"))
        store.save_releases([_release("r1")])
        lock.release()
        again = StateStore(_default(url, region))  # another operator's machine, the same account
        assert again.current() == Current(slot="blue", release_id="r1", switched_at="t")
        assert [r.id for r in again.releases()] == ["r1"]
        assert again.backend.where("current.json") == (
            f"s3://{bucket}/shipyard/shop/production/current.json"
        )


def test_reading_a_missing_default_bucket_finds_nothing_deployed_and_creates_nothing() -> None:
    with moto_server() as url:
        state = _default(url)
        store = StateStore(state)
        # What plan, status and history read: no state, no lock, no logs.
        assert store.current() is None and store.releases() == [] and store.history() == []
        assert store.intent() is None and store.log_ids() == []
        assert state.lock_read() is None
        assert state.names("logs") == []
        state.delete("current.json")
        state.lock_delete(None)
        state.lock_prune(0)
        state.remove_all()
        assert _buckets(url) == []

        state.write("current.json", b"{}")  # the first write creates it
        assert _buckets(url) == [f"shipyard-state-{ACCOUNT}-{REGION}"]


def test_a_named_bucket_is_never_created_and_its_absence_names_the_setting() -> None:
    with moto_server() as url:
        state = S3State(client("s3", url), "no-such-bucket-here", PurePosixPath("shipyard/a/b"))
        with pytest.raises(StateError) as caught:
            Lock(StateStore(state), "first", "deploy", ttl=60).acquire()
        assert _buckets(url) == []
    assert "s3://no-such-bucket-here: no such bucket" in caught.value.message
    assert "providers.aws.state_bucket" in caught.value.message
    assert "writing s3://no-such-bucket-here/shipyard/a/b/lock.json" in caught.value.message
    assert caught.value.hint and "providers.aws.state_bucket" in caught.value.hint


def test_two_operators_creating_the_default_bucket_at_once_both_go_on() -> None:
    """The second CreateBucket of the same account is refused with BucketAlreadyOwnedByYou:
    its operator configures the same bucket (every step is idempotent) and writes."""
    bucket = f"shipyard-state-{ACCOUNT}-{REGION}"
    where = {"Bucket": bucket}
    for created in ("", "BucketAlreadyOwnedByYou"):  # the winner, then the other
        s3 = s3_client(region=REGION, endpoint_url="http://127.0.0.1:1")
        sts = aws.client("sts", region=REGION, endpoint_url="http://127.0.0.1:1")
        state = S3State(s3, DefaultBucket(sts, REGION), PurePosixPath("shipyard/shop/production"))
        with Stubber(s3) as stub, Stubber(sts) as identity:
            identity.add_response(
                "get_caller_identity",
                {"Account": ACCOUNT, "Arn": f"arn:aws:iam::{ACCOUNT}:user/op", "UserId": "op"},
            )
            stub.add_client_error(
                "put_object", service_error_code="NoSuchBucket", http_status_code=404
            )
            location = {"CreateBucketConfiguration": {"LocationConstraint": REGION}, **where}
            if created:
                stub.add_client_error(
                    "create_bucket", service_error_code=created, http_status_code=409,
                    expected_params=location,
                )  # fmt: skip
            else:
                stub.add_response("create_bucket", {}, location)
            stub.add_response("put_public_access_block", {}, None)
            stub.add_response("put_bucket_versioning", {}, None)
            stub.add_response("put_bucket_encryption", {}, None)
            stub.add_response("put_bucket_tagging", {}, None)
            stub.add_response("put_object", {"ETag": '"e1"'}, None)
            assert state.lock_create("op", b"{}") == '"e1"'
            stub.assert_no_pending_responses()


def test_two_operators_writing_first_at_once_share_one_default_bucket() -> None:
    """Against the stand-in: two first writes at the same moment, each finding the bucket
    missing; whichever CreateBucket loses (BucketAlreadyOwnedByYou) goes on, and a third
    creator later finds a bucket of its own account and only configures it again."""
    with moto_server() as url:
        states = [_default(url, environment=name) for name in ("one", "two")]
        ready = threading.Barrier(len(states), timeout=30)
        failed: list[BaseException] = []

        def first_write(state: S3State) -> None:
            ready.wait()
            try:
                state.write("current.json", state.root.name.encode())
            except ShipyardError as exc:
                failed.append(exc)

        threads = [threading.Thread(target=first_write, args=(s,)) for s in states]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert failed == []
        assert [s.read("current.json") for s in states] == [b"one", b"two"]

        late = _default(url)
        DefaultBucket(_on(REGION, "sts", url), REGION).create(late.client)
        assert _buckets(url) == [f"shipyard-state-{ACCOUNT}-{REGION}"]
        assert late.client.get_bucket_versioning(Bucket=late.bucket)["Status"] == "Enabled"


def test_a_default_bucket_name_another_account_holds_says_to_name_one() -> None:
    s3 = s3_client(region=REGION, endpoint_url="http://127.0.0.1:1")
    sts = aws.client("sts", region=REGION, endpoint_url="http://127.0.0.1:1")
    state = S3State(s3, DefaultBucket(sts, REGION), PurePosixPath("shipyard/shop/production"))
    with Stubber(s3) as stub, Stubber(sts) as identity:
        identity.add_response(
            "get_caller_identity",
            {"Account": ACCOUNT, "Arn": f"arn:aws:iam::{ACCOUNT}:user/op", "UserId": "op"},
        )
        stub.add_client_error("put_object", service_error_code="NoSuchBucket", http_status_code=404)
        stub.add_client_error(
            "create_bucket", service_error_code="BucketAlreadyExists", http_status_code=409
        )
        with pytest.raises(StateError) as caught:
            state.write("current.json", b"{}")
    assert f"s3://shipyard-state-{ACCOUNT}-{REGION}" in caught.value.message
    assert "another AWS account" in caught.value.message
    assert "providers.aws.state_bucket" in (caught.value.hint or "")


def test_the_account_is_asked_only_when_the_state_is_first_touched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``state_store`` of an environment naming no bucket asks nothing of AWS: an endpoint out
    of reach is only met when the state is read (``check`` never reads it)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    config = _aws_config(tmp_path, "http://127.0.0.1:1")
    store = state_store(config)  # no request: nothing listens there
    settings = AwsSettings.of(config)
    assert settings.state_bucket is None
    assert state_location(settings) == (
        f"s3://shipyard-state-<account>-{REGION} (the account's, created by the first deploy)"
    )
    with pytest.raises(HostUnreachable, match="AWS sts GetCallerIdentity"):
        store.current()


@pytest.mark.parametrize(
    ("named", "said"),
    [
        (
            None,
            f"s3://shipyard-state-<account>-{REGION} (the account's, created by the first deploy)",
        ),
        ("shop-state", "s3://shop-state;"),
    ],
)
def test_check_says_where_the_state_is_without_asking_aws(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, named: str | None, said: str
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    engine = {
        ("docker", "version"): '{"Version": "28.2.2", "Arch": "amd64", "Os": "linux"}',
        ("docker", "compose"): "2.37.1\n",
    }

    def answer(argv: list[str]) -> CommandResult:
        return CommandResult(tuple(argv), 0, engine[argv[0], argv[1]], "")

    config = _aws_config(tmp_path, "http://127.0.0.1:1", state_bucket=named)  # nothing there
    found = AwsProvider(FakeHost(answer)).preflight(config)
    assert f"state in {said}" in found


def test_an_environment_naming_no_bucket_keeps_its_state_in_the_accounts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    with moto_server() as url:
        store = state_store(_aws_config(tmp_path, url))
        assert store.current() is None and _buckets(url) == []
        lock = Lock(store, "first", "deploy", ttl=60)
        lock.acquire()
        assert _buckets(url) == [f"shipyard-state-{ACCOUNT}-{REGION}"]
        lock.release()


def _aws_config(tmp: Path, endpoint: str, *, state_bucket: str | None = None) -> Config:
    """``tests.bad_configs.VALID`` with production on AWS through ``endpoint``, naming
    ``state_bucket`` (by default none)."""
    named = f"    state_bucket: {state_bucket}\n" if state_bucket else ""
    yaml = VALID.replace(
        "  production:\n    target: local\n    proxy:\n      http_port: 18081\n",
        f"  production:\n    target: aws://{REGION}\n",
    ).replace(
        "environments:\n",
        f"providers:\n  aws:\n    endpoint_url: {endpoint}\n    subnets: [subnet-a, subnet-b]\n"
        f"{named}environments:\n",
        1,
    )
    (tmp / "shipyard.yml").write_text(yaml, encoding="utf-8")
    env = tmp / ".env.production"
    env.write_text(
        ENV_FILE + "DATABASE_URL=postgres://shop:pw@db.internal/shop\n", encoding="utf-8"
    )
    env.chmod(0o600)
    return load_config(tmp / "shipyard.yml", "production")


# -- the IAM policy ---------------------------------------------------------------------------------
POLICY = Path(__file__).parents[2] / "docs" / "aws-iam-policy.json"

# The IAM action (and the resource kind) each request of the state needs.
_S3_ACTIONS = {
    "GetObject": ("s3:GetObject", "object"),
    "PutObject": ("s3:PutObject", "object"),
    "DeleteObject": ("s3:DeleteObject", "object"),
    "DeleteObjects": ("s3:DeleteObject", "objects"),
    "CopyObject": ("s3:PutObject", "object"),  # and s3:GetObject on its source
    "ListObjectsV2": ("s3:ListBucket", "bucket"),
    "CreateBucket": ("s3:CreateBucket", "bucket"),
    "PutPublicAccessBlock": ("s3:PutBucketPublicAccessBlock", "bucket"),
    "PutBucketVersioning": ("s3:PutBucketVersioning", "bucket"),
    "PutBucketEncryption": ("s3:PutEncryptionConfiguration", "bucket"),
    "PutBucketTagging": ("s3:PutBucketTagging", "bucket"),
}


def _needed(operation: str, params: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    """The (IAM action, resource ARN, condition keys) a request needs."""
    if operation == "GetCallerIdentity":
        return [("sts:GetCallerIdentity", "*", {})]
    assert operation in _S3_ACTIONS, f"the state makes S3 request {operation}: map it here"
    action, kind = _S3_ACTIONS[operation]
    bucket = f"arn:aws:s3:::{params['Bucket']}"
    if kind == "bucket":
        prefix = params.get("Prefix")
        return [(action, bucket, {"s3:prefix": prefix} if prefix is not None else {})]
    keys = [o["Key"] for o in params["Delete"]["Objects"]] if kind == "objects" else [params["Key"]]
    needed = [(action, f"{bucket}/{key}", {}) for key in keys]
    if operation == "CopyObject":
        source = params["CopySource"]
        needed.append(("s3:GetObject", f"arn:aws:s3:::{source['Bucket']}/{source['Key']}", {}))
    return needed


def _granted(policy: dict[str, Any], action: str, resource: str, keys: dict[str, str]) -> bool:
    def listed(value: str | list[str]) -> list[str]:
        return [value] if isinstance(value, str) else value

    for statement in policy["Statement"]:
        if statement["Effect"] != "Allow":
            continue
        if not any(fnmatchcase(action.lower(), a.lower()) for a in listed(statement["Action"])):
            continue
        if not any(fnmatchcase(resource, r) for r in listed(statement["Resource"])):
            continue
        conditions = statement.get("Condition", {}).get("StringLike", {})
        if all(
            key in keys and any(fnmatchcase(keys[key], v) for v in listed(values))
            for key, values in conditions.items()
        ):
            return True
    return False


def test_the_iam_policy_grants_every_request_the_state_makes_in_the_default_bucket() -> None:
    """Every request of a first deploy's state (the bucket created, the lock taken, heartbeat,
    taken over, pruned, released; records written, listed, read and removed) against the
    stand-in, each checked against docs/aws-iam-policy.json with the default bucket's name as
    its STATE_BUCKET."""
    made: list[tuple[str, dict[str, Any]]] = []

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        made.append((model.name, copy.deepcopy(params)))  # botocore edits them later

    with moto_server() as url:
        s3, sts = _on(REGION, "s3", url), _on(REGION, "sts", url)
        for service in (s3, sts):
            service.meta.events.register("provide-client-params.*.*", record)
        state = S3State(s3, DefaultBucket(sts, REGION), PurePosixPath("shipyard/shop/production"))
        store = StateStore(state)
        assert store.current() is None
        lock = Lock(store, "first", "deploy", ttl=60)
        lock.acquire()
        store.set_current(Current(slot="blue", release_id="r1", switched_at="t"))
        store.backend.write("logs/a.jsonl", b"{}\n")
        assert store.log_ids() == ["a"]
        token = state.lock_read()
        assert token is not None
        assert state.lock_take_over(token[1], "first", "second", b"{}") is not None
        state.lock_prune(0)
        state.lock_delete(None)
        lock.release()  # its heartbeat ends; the record is no longer its own, so stays deleted
        state.remove_all()
        bucket = state.bucket

    policy = json.loads(
        POLICY.read_text(encoding="utf-8")
        .replace("STATE_BUCKET", bucket)
        .replace("ACCOUNT", ACCOUNT)
    )
    operations = {operation for operation, _ in made}
    assert {"GetCallerIdentity", "CreateBucket", "PutBucketTagging", "CopyObject"} <= operations
    refused = [
        (action, resource)
        for operation, params in made
        for action, resource, keys in _needed(operation, params)
        if not _granted(policy, action, resource, keys)
    ]
    assert refused == []


def test_the_default_bucket_must_be_this_accounts() -> None:
    """Its name can be guessed: every request says which account must own it, and S3's
    refusal (another account's bucket of that name) says what to do."""
    s3 = s3_client(region=REGION, endpoint_url="http://127.0.0.1:1")
    sts = aws.client("sts", region=REGION, endpoint_url="http://127.0.0.1:1")
    state = S3State(s3, DefaultBucket(sts, REGION), PurePosixPath("shipyard/shop/production"))
    bucket = f"shipyard-state-{ACCOUNT}-{REGION}"
    key = "shipyard/shop/production/current.json"
    with Stubber(s3) as stub, Stubber(sts) as identity:
        identity.add_response(
            "get_caller_identity",
            {"Account": ACCOUNT, "Arn": f"arn:aws:iam::{ACCOUNT}:user/op", "UserId": "op"},
        )
        stub.add_client_error(
            "get_object", service_error_code="AccessDenied", http_status_code=403,
            expected_params={"Bucket": bucket, "Key": key, "ExpectedBucketOwner": ACCOUNT},
        )  # fmt: skip
        with pytest.raises(StateError) as refused:
            state._get("current.json")
        stub.assert_no_pending_responses()
    assert "another AWS account owns a bucket of the default state bucket's name" in str(
        refused.value
    )
    assert "providers.aws.state_bucket" in str(refused.value.hint)
