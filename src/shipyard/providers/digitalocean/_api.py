"""DigitalOcean's API as shipyard talks to it: JSON over HTTPS, the token from
``DIGITALOCEAN_TOKEN`` in shipyard's environment (never shipyard.yml, nor the env file whose
values reach the app), one retry policy, and errors that name the request, DigitalOcean's answer
and what to do.

The policy: a 429 waits for ``Retry-After`` (else until ``ratelimit-reset``), a 5xx or a lost
connection backs off (1 s doubling to 30 s), all within a total time (``budget``); what remains
after it is an error naming the limit and when it resets. A POST (it creates something) is
retried only when DigitalOcean cannot have acted on it: a 429, or a connection never made; after
a 5xx or a lost answer the caller finds what exists by its tag instead of creating it twice. A Droplet limit reached (422) names
the limit to ask for. The token is sent in a header only and never appears in a message.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx

from shipyard.errors import ExitCode, ShipyardError
from shipyard.waiting import Backoff, Clock, Interval, wait_until

TOKEN_ENV = "DIGITALOCEAN_TOKEN"  # noqa: S105 — the variable's name, not a token
_BACKOFF_CAP = 30.0
_PER_PAGE = 200
_SERVER_ERROR = 500
_TOO_MANY = 429
_REFUSED = {
    401: ("the token is refused", f"set {TOKEN_ENV} to a token of the account"),
    403: (
        "the token may not do this",
        "use a token with write scope (cloud.digitalocean.com/account/api/tokens)",
    ),
}


class DoError(ShipyardError):
    """A request to DigitalOcean's API failed: the request, the status, DigitalOcean's answer."""

    exit_code: ClassVar[ExitCode] = ExitCode.FAILED

    def __init__(
        self, request: str, status: int, message: str, *, hint: str, code: str = ""
    ) -> None:
        super().__init__(f"DigitalOcean {request}: {message}", hint=hint)
        self.request, self.status, self.code = request, status, code


class RateLimited(DoError):
    """The API's rate limit stayed spent for longer than the request may wait."""


class LimitReached(DoError):
    """An account limit (the Droplet limit) refuses what was asked."""


class DoApi:
    """Requests to DigitalOcean's API (see the module)."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        budget: float = 120.0,
        clock: Clock | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.budget = budget
        self.clock = clock or Clock()
        self._client = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=30.0,
            transport=transport,
        )

    @classmethod
    def from_environment(
        cls, url: str, environ: Mapping[str, str] | None = None, **options: Any
    ) -> DoApi:
        token = (os.environ if environ is None else environ).get(TOKEN_ENV, "")
        if not token:
            raise ShipyardError(
                f"{TOKEN_ENV} is not set: shipyard needs a DigitalOcean API token",
                hint="create one with read and write scope at "
                "cloud.digitalocean.com/account/api/tokens and export it (never in shipyard.yml)",
            )
        return cls(url, token, **options)

    def close(self) -> None:
        self._client.close()

    # -- requests -----------------------------------------------------------------------------
    def get(self, path: str, **query: str | int) -> dict[str, Any]:
        return self._json(self._request("GET", path, query=query))

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._json(self._request("POST", path, body=body))

    def put(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._json(self._request("PUT", path, body=body))

    def delete(self, path: str) -> None:
        self._request("DELETE", path)

    def pages(self, path: str, key: str, **query: str | int) -> list[dict[str, Any]]:
        """Every item of a paginated list (``key``: ``droplets``, ``ssh_keys``…)."""
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            answer = self.get(path, **query, page=page, per_page=_PER_PAGE)
            items += answer.get(key, [])
            if not (answer.get("links") or {}).get("pages", {}).get("next"):
                return items
            page += 1

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        if not response.content:
            return {}
        answer: dict[str, Any] = response.json()
        return answer

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        query: Mapping[str, str | int] | None = None,
    ) -> httpx.Response:
        request = f"{method} {path}"
        retries = Backoff(self.budget, most=_BACKOFF_CAP, clock=self.clock)
        creates = method == "POST"
        while True:
            try:
                response = self._client.request(method, path, json=body, params=query)
            except httpx.TransportError as exc:
                sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if (creates and sent) or not retries.pause():
                    raise DoError(
                        request, 0, f"{self.url} is out of reach ({exc})",
                        hint="check the network, or `providers.digitalocean.api_url`",
                    ) from exc  # fmt: skip
                continue
            server_error = response.status_code >= _SERVER_ERROR
            if response.status_code == _TOO_MANY or (server_error and not creates):
                asked = _wait(response) if response.status_code == _TOO_MANY else None
                if not retries.pause(asked):
                    raise _failed(request, response)
                continue
            if response.is_error:
                raise _failed(request, response)
            return response


def tagged_one(found: list[dict[str, Any]], what: str, tag: str) -> dict[str, Any] | None:
    """The one resource of ``found`` (``what``, plural, e.g. "Droplets") tagged ``tag``;
    ``None`` when there is none; more than one is refused, naming each."""
    if len(found) > 1:
        listed = ", ".join(f"{r.get('name')} ({r['id']})" for r in found)
        raise ShipyardError(
            f"{len(found)} {what} are tagged {tag}: {listed}",
            hint="delete the one you do not want in DigitalOcean's console (or untag it)",
        )
    return found[0] if found else None


def awaited(
    read: Callable[[], dict[str, Any] | None],
    ready: Callable[[dict[str, Any]], bool],
    *,
    timeout: float,
    interval: Interval,
    clock: Clock,
    failure: Callable[[str], ShipyardError],
) -> dict[str, Any]:
    """What ``read`` answers once it is ``ready``; after ``timeout`` seconds, ``failure`` of its
    last status ("missing": it is gone) is raised."""
    found = wait_until(
        read, timeout=timeout, interval=interval, clock=clock,
        done=lambda r: r is not None and ready(r),
    )  # fmt: skip
    if found is None:
        last = read()
        raise failure(str(last.get("status")) if last else "missing")
    return found


def _wait(response: httpx.Response) -> float | None:
    """How long a 429 asks to wait: ``Retry-After``, else until ``ratelimit-reset``."""
    after = response.headers.get("retry-after", "")
    if after.isdigit():
        return float(after)
    reset = response.headers.get("ratelimit-reset", "")
    if reset.isdigit():
        return max(0.0, int(reset) - datetime.now(UTC).timestamp())
    return None


def _failed(request: str, response: httpx.Response) -> DoError:
    """DigitalOcean's answer as shipyard's error: what to do about it named."""
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    code = str(answer.get("id", "")) if isinstance(answer, dict) else ""
    message = str(answer.get("message", "")) if isinstance(answer, dict) else ""
    status = response.status_code
    said = message or response.reason_phrase
    if status == _TOO_MANY:
        reset = response.headers.get("ratelimit-reset", "")
        when = (
            f"; it resets at {datetime.fromtimestamp(int(reset), UTC):%H:%M:%S} UTC"
            if reset.isdigit()
            else ""
        )
        return RateLimited(
            request, status,
            f"the API's rate limit ({response.headers.get('ratelimit-limit', '5000')} requests "
            f"an hour) is spent{when}",
            hint="wait for the reset, or spread the work over more time; nothing half-made is "
            "left unknown: the next run finds what exists by its tags",
            code=code,
        )  # fmt: skip
    if status in _REFUSED:
        what, hint = _REFUSED[status]
        return DoError(request, status, f"{what} ({status}: {said})", hint=hint, code=code)
    if status == 422 and "limit" in said.lower():  # noqa: PLR2004
        return LimitReached(
            request, status, said,
            hint="ask DigitalOcean to raise the account's Droplet limit (Settings, Team), or "
            "destroy a Droplet you no longer use",
            code=code,
        )  # fmt: skip
    if status >= _SERVER_ERROR:
        return DoError(request, status, f"{status} {said} (after retries)",
                       hint="DigitalOcean's side: see status.digitalocean.com, then retry", code=code)  # fmt: skip
    return DoError(request, status, f"{status} {code}: {said}".replace(" : ", ": "),
                   hint="the request was refused as sent", code=code)  # fmt: skip
