"""One registry's HTTP conversation: scheme and auth found by a ``/v2/`` ping, each request authenticated
for the repositories it touches (anonymous, Basic, or bearer tokens scoped per repository, reused until
expiry and refreshed on 401), transient failures retried (:mod:`.retry`), and every failure turned
into a :class:`~arcmirror.oci.errors.HintedError` that names the registry and what to do.

The distribution API's operations on top of it are :class:`~.client.RegistryClient`'s.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from typing import Callable, Iterable, Sequence, TypeVar

import requests

from .. import __version__, cancel
from ..oci.errors import HintedError, NotFoundError, ProtocolError
from ..oci.reference import DOCKER_HUB_ALIASES, split_host_port
from ..secret import Secret
from . import products
from .auth import Challenge, Credentials, Token, TokenCache, granted_access, parse_challenge
from .errors import (
    CODE_HINTS,
    PERMANENT_CODES,
    AuthError,
    ConnectError,
    RefusedError,
    RegistryError,
    TLSError,
    TransientError,
    describe_errors,
    error_entries,
    short_reason,
    unresolvable,
)
from .retry import RetryPolicy, requested_delay
from .storage import malformed_location
from .transport import CancellableAdapter

USER_AGENT = f"arcmirror/{__version__}"
_Self = TypeVar("_Self", bound="RegistrySession")


class RegistrySession:
    """The HTTP conversation with one registry (requests, auth, retries, errors).

    ``label`` ("source registry 127.0.0.1:5000") and ``prefix`` ("SOURCE_DOCKER") make error
    messages name the registry and the variables to change.
    """

    def __init__(
        self,
        registry: str,
        *,
        credentials: Credentials | None = None,
        insecure: bool = False,
        ca_bundle: str | None = None,
        label: str | None = None,
        prefix: str = "DOCKER",
        retry: RetryPolicy,
        timeout: tuple[float, float],
        pool_size: int = 16,
        sleep: Callable[[float], None] = cancel.sleep,
    ) -> None:
        self.registry = registry
        self.host = DOCKER_HUB_ALIASES.get(registry, registry)
        self.credentials = credentials
        self.insecure = insecure
        self.label = label or f"registry {registry}"
        self.prefix = prefix
        self.retry = retry
        self.timeout = timeout
        self._sleep = sleep
        self._verify: bool | str = False if insecure else (ca_bundle or True)
        self._ca_bundle = ca_bundle
        self._session = requests.Session()
        self._session.headers["User-Agent"] = USER_AGENT
        # an explicit (empty) auth: requests then never reads ~/.netrc, on every request, to add its own
        self._session.auth = _no_auth
        adapter = CancellableAdapter(pool_connections=4, pool_maxsize=pool_size)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._tokens = TokenCache()
        self._ready = threading.RLock()
        self._trying: str | None = None
        self._base_url: str | None = None
        self._challenge: Challenge | None = None
        self._ping_error: HintedError | None = None
        #: the registry answered a manifest with ``subject`` with OCI-Subject: it keeps the referrers API itself
        self.subject_indexed = False
        #: the product its /v2/ challenge names (Harbor, GitLab, Quay, ...), for messages: :mod:`.products`
        self.product: str | None = None

    # -- plumbing ----------------------------------------------------------------------------

    def close(self) -> None:
        self._session.close()

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def base_url(self) -> str:
        self.ping()
        assert self._base_url is not None
        return self._base_url

    def _tls_error(self, exc: Exception) -> TLSError:
        return TLSError(
            f"TLS handshake with the {self.label} failed: {short_reason(exc)}",
            f"if it uses a private CA, set {self.prefix}_CA_BUNDLE to that CA's PEM file; "
            f"if it speaks plain HTTP or you accept an unverified certificate, set {self.prefix}_INSECURE=true",
        )

    def _raw(self, method: str, url: str, **kwargs) -> requests.Response:
        """One HTTP exchange; transport failures become RegistryErrors (Cancelled during a cancellation)."""
        kwargs.setdefault("timeout", self.timeout)
        kwargs.setdefault("verify", self._verify)
        cancel.check()
        try:
            return self._session.request(method, url, **kwargs)
        except requests.exceptions.RequestException as exc:
            cancel.check()  # a connection shut down by a cancellation is not the registry's failure
            raise self._transport_error(exc, method, url) from None
        except ValueError:  # requests parses a redirect's Location even when it does not follow it
            raise malformed_location(self.label, f"{method} {_path(url)}", self.prefix) from None

    def _transport_error(self, exc: requests.exceptions.RequestException, method: str, url: str) -> RegistryError:
        if isinstance(exc, requests.exceptions.SSLError):
            return self._tls_error(exc)
        if isinstance(exc, requests.exceptions.Timeout):
            return TransientError(f"the {self.label} did not answer in time ({method} {_path(url)}): {short_reason(exc)}")
        if isinstance(exc, requests.exceptions.ConnectionError):
            text = short_reason(exc)
            if unresolvable(text):
                return RegistryError(
                    f"the {self.label} cannot be found: its host name does not resolve",
                    f"check {self.prefix}_REGISTRY",
                )
            return ConnectError(
                f"cannot connect to the {self.label}: {text}",
                f"check {self.prefix}_REGISTRY and that the registry is up and reachable (proxy settings: HTTPS_PROXY/NO_PROXY)",
            )
        return TransientError(f"{method} {_path(url)} on the {self.label} failed: {short_reason(exc)}")

    def _with_retries(self, what: str, attempt_fn: Callable[[], requests.Response],
                      diagnose: Callable[[], None] | None = None) -> requests.Response:
        """Run ``attempt_fn`` until it gives a non-transient answer or the budget is spent.

        ``diagnose()`` runs after an attempt that got no answer at all (a dropped connection), to ask the
        registry why; it raises when the answer says a retry cannot help (ECR drops an upload into a repository
        that does not exist).
        """
        last: RegistryError | None = None
        rate_limit = ""
        for attempt in range(1, self.retry.attempts + 1):
            retry_after = None
            try:
                response = attempt_fn()
            except TransientError as exc:
                last, retry_after = exc, exc.retry_after
                if diagnose is not None and isinstance(exc, ConnectError):
                    diagnose()
            else:
                if response.status_code == 429 or response.status_code >= 500:
                    errors = error_entries(response)
                    if PERMANENT_CODES.intersection(code for code, _, _ in errors):
                        return response  # the registry says a retry would get the same answer
                    retry_after = requested_delay(response)
                    rate_limit = _rate_limit(response) if response.status_code == 429 else ""
                    last = TransientError(
                        f"the {self.label} answered {response.status_code} {response.reason} to {what}"
                        f"{describe_errors(errors)}",
                        status=response.status_code, retry_after=retry_after,
                    )
                    response.close()
                else:
                    return response
            if attempt < self.retry.attempts:
                self._sleep(self.retry.delay(attempt, retry_after))
        assert last is not None
        hint = last.hint or "the registry may be overloaded or down: run again later (only what is missing is sent)"
        if last.status == 429:
            hint = (f"the registry limits requests{rate_limit}: run again later (only what is missing is sent)"
                    + ("" if self.credentials else f", or log in: set {self.prefix}_USERNAME and {self.prefix}_PASSWORD "
                                                   "(Docker Hub's rate limit is higher for a login)"))
        attempts = self.retry.attempts
        raise TransientError(f"{last.message}; gave up after {attempts} attempt{'s' if attempts != 1 else ''}", hint,
                             status=last.status)

    # -- ping and auth -----------------------------------------------------------------------

    def ping(self) -> None:
        """Find the scheme and auth method (once); raise the same error for every caller if it fails."""
        with self._ready:
            if self._base_url is not None:
                return
            if self._ping_error is not None:
                raise self._ping_error
            try:
                self._base_url, response = self._probe()
                self._challenge = parse_challenge(response.headers.get("WWW-Authenticate"))
                self.product = products.identify(self._challenge)
                if response.status_code == 401 and self._challenge and self._challenge.scheme == "basic":
                    self._check_basic()
                elif response.status_code not in (200, 401):
                    raise ProtocolError(
                        f"the {self.label} answered {response.status_code} to GET /v2/: it does not look like a container registry",
                        f"check {self.prefix}_REGISTRY",
                    )
            except HintedError as exc:
                self._base_url = None
                self._ping_error = exc
                raise

    def _probe(self) -> tuple[str, requests.Response]:
        """Find the scheme: HTTPS, verified unless the registry is marked insecure.

        An insecure registry is asked over plain HTTP first (no credentials go with a ping) and over
        HTTPS, unverified, when it does not answer like a registry there: the plain-HTTP registries
        of test beds and labs then cost no TLS set-up, and a TLS-only one still works.
        """
        https, plain = f"https://{self.host}", f"http://{self.host}"
        if self.insecure:
            try:
                response = self._with_retries("GET /v2/", lambda: self._raw("GET", f"{plain}/v2/"))
            except (ConnectError, TransientError):
                pass
            else:
                if response.status_code in (200, 401) and (
                        "Docker-Distribution-Api-Version" in response.headers or "WWW-Authenticate" in response.headers):
                    return plain, response
                response.close()
        return https, self._with_retries("GET /v2/", lambda: self._raw("GET", f"{https}/v2/"))

    def _registry_at(self, base: str) -> bool:
        """Whether ``base`` answers ``GET /v2/`` as a registry does (asked only when a first answer did not say)."""
        try:
            response = self._with_retries("GET /v2/", lambda: self._raw("GET", f"{base}/v2/"))
        except HintedError:
            return False
        response.close()
        return response.status_code in (200, 401)

    def _check_basic(self) -> None:
        if not self.credentials:
            raise AuthError(
                f"the {self.label} requires a login",
                f"set {self.prefix}_USERNAME and {self.prefix}_PASSWORD",
                status=401,
            )
        base = self._base_url
        response = self._with_retries(
            "GET /v2/", lambda: self._raw("GET", f"{base}/v2/", headers={"Authorization": self.credentials.basic_header()})
        )
        if response.status_code == 401:
            raise self._refused(401)

    def _refused(self, status: int) -> AuthError:
        assert self.credentials is not None
        return AuthError(
            f"the {self.label} refused the credentials of user {self.credentials.username!r} "
            f"(from {self.credentials.origin}, HTTP {status})",
            f"check {self.prefix}_USERNAME and {self.prefix}_PASSWORD",
            status=status,
        )

    def _authorization(self, scopes: frozenset[str], *, refresh: bool = False,
                       challenge: Challenge | None = None) -> str | None:
        challenge = challenge or self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            return self.credentials.basic_header() if self.credentials else None
        if challenge.scheme != "bearer":
            return None
        wanted = frozenset(scopes | set(challenge.scopes))
        token = None if refresh else self._tokens.get(wanted)
        if token is None:
            token = self._fetch_token(challenge, wanted)
            self._tokens.put(wanted, token)
        return "Bearer " + token.value.reveal()

    def _realm_accepts_credentials(self, realm: str) -> bool:
        """Send credentials to a token realm only over HTTPS, or to the registry's own host."""
        parsed = urllib.parse.urlsplit(realm)
        if parsed.scheme == "https":
            return True
        own_host = split_host_port(self.host)[0].strip("[]")
        base = self._base_url or self._trying or ""
        return parsed.scheme == "http" and parsed.hostname == own_host and base.startswith("http://")

    def _fetch_token(self, challenge: Challenge, scopes: frozenset[str]) -> Token:
        realm = challenge.realm
        if not realm or urllib.parse.urlsplit(realm).scheme not in ("http", "https"):
            raise ProtocolError(f"the {self.label} asked for a bearer token but gave no usable realm URL ({realm!r})")
        params: list[tuple[str, str]] = []
        if challenge.service:
            params.append(("service", challenge.service))
        params += [("scope", s) for s in sorted(scopes)]
        headers = {}
        if self.credentials:
            if not self._realm_accepts_credentials(realm):
                raise AuthError(
                    f"the {self.label} sends logins to the token service {realm}, which is plain HTTP on another host",
                    "arcmirror will not send a password there; use the registry's HTTPS endpoint",
                )
            headers["Authorization"] = self.credentials.basic_header()
        response = self._with_retries(
            "a token request", lambda: self._raw("GET", realm, params=params, headers=headers, allow_redirects=False)
        )
        if response.status_code != 200:
            explained = self._explain(response, "GET", "a token", sorted(scopes))
            if explained is not None:
                raise explained
        if response.status_code in (401, 403):
            if self.credentials:
                raise self._refused(response.status_code)
            raise AuthError(
                f"the token service of the {self.label} refused anonymous access (HTTP {response.status_code})",
                f"set {self.prefix}_USERNAME and {self.prefix}_PASSWORD",
                status=response.status_code,
            )
        if response.status_code != 200:
            raise ProtocolError(f"the token service of the {self.label} answered {response.status_code} {response.reason}")
        try:
            body = response.json()
            value = body.get("token") or body.get("access_token")
            expires_in = float(body.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            raise ProtocolError(f"the token service of the {self.label} answered something that is not a token") from None
        if not value:
            raise ProtocolError(f"the token service of the {self.label} answered without a token")
        lifetime = max(expires_in, 1.0)
        return Token(Secret(value), time.monotonic() + lifetime, margin=min(10.0, lifetime / 4),
                     granted=granted_access(value))

    # -- requests with auth ------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        scopes: Iterable[str],
        what: str,
        ok: Sequence[int] = (200,),
        retry: bool = True,
        diagnose: Callable[[], None] | None = None,
        **kwargs,
    ) -> requests.Response:
        """Send ``method path`` with auth for ``scopes``; raise a HintedError unless the status is in ``ok``.

        ``what`` describes the operation for messages ("manifest arcdata/x:tag"); the first of ``scopes``
        names the repository the request is about. ``diagnose``: see :meth:`_with_retries`.
        """
        scope_list = list(scopes)
        body = kwargs.get("data")
        replayable = body is None or isinstance(body, (bytes, str))
        if self._base_url is None and not path.startswith(("http://", "https://")) and replayable:
            with self._ready:  # the first request finds the scheme and the auth: the others wait for it
                if self._base_url is None:
                    return self._first(method, path, scope_list, what, ok, retry, diagnose, kwargs)
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        response, _ = self._send(method, url, scope_list, what, retry, diagnose, kwargs)
        if response.status_code in ok:
            return response
        raise self._status_error(response, method, what, scope_list)

    def _send(self, method: str, url: str, scope_list: list[str], what: str, retry: bool,
              diagnose: Callable[[], None] | None, kwargs: dict) -> tuple[requests.Response, Challenge | None]:
        """One request with auth for the scopes (a new token, or Basic, when a 401 asks), retried as
        :meth:`_with_retries` says; the answer, and the challenge a 401 carried, if any."""
        scope_set = frozenset(scope_list)
        body = kwargs.get("data")
        replayable = body is None or isinstance(body, (bytes, str))
        headers = dict(kwargs.get("headers") or {})
        options = {k: v for k, v in kwargs.items() if k != "headers"}
        seen: list[Challenge] = []

        def attempt() -> requests.Response:
            auth = self._authorization(scope_set)
            if auth:
                headers["Authorization"] = auth
            response = self._raw(method, url, headers=headers, **options)
            if response.status_code == 401:
                challenge = parse_challenge(response.headers.get("WWW-Authenticate"))
                if challenge is None or (challenge.scheme == "basic" and (
                        not self.credentials or "Bearer" in headers.get("Authorization", ""))):
                    # not "log in again": no challenge (Harbor sends an empty one), or Basic after a token was
                    # sent (Harbor's default challenge, goharbor/harbor auth.go getChallenge); its body says why
                    return response
                seen.append(challenge)
                response.close()
                fresh = self._authorization(scope_set, refresh=True, challenge=challenge) or ""
                if not replayable:  # the streamed body is spent: the caller starts over with the new token
                    raise TransientError(f"the {self.label} asked for a new token during {method} {what}")
                headers["Authorization"] = fresh
                response = self._raw(method, url, headers=headers, **options)
            return response

        response = self._with_retries(f"{method} {what}", attempt, diagnose) if retry else attempt()
        return response, (seen[0] if seen else None)

    def _first(self, method: str, path: str, scope_list: list[str], what: str, ok: Sequence[int], retry: bool,
               diagnose: Callable[[], None] | None, kwargs: dict) -> requests.Response:
        """The registry's first request is also its ``/v2/`` check (one request and one round trip less per run):
        it finds the scheme (an insecure registry is asked over plain HTTP first) and the auth, and its failure to
        reach the registry, or a refusal of the credentials, becomes the one error every later request gets."""
        if self._ping_error is not None:
            raise self._ping_error
        candidates = [f"http://{self.host}", f"https://{self.host}"] if self.insecure else [f"https://{self.host}"]
        for base in candidates:
            last = base == candidates[-1]
            self._trying = base  # the scheme the first request tries (a token realm's check needs it)
            try:
                response, challenge = self._send(method, base + path, scope_list, what, retry, diagnose, kwargs)
            except (ConnectError, TransientError, TLSError) as exc:
                if not last:
                    continue  # an insecure registry that does not speak plain HTTP: HTTPS next
                self._ping_error = exc
                raise
            except AuthError as exc:  # the token service refused the credentials: the registry's, not this request's
                self._ping_error = exc
                raise
            if "Docker-Distribution-Api-Version" not in response.headers and challenge is None \
                    and "WWW-Authenticate" not in response.headers and not self._registry_at(base):
                response.close()
                if not last:
                    continue  # not a registry over plain HTTP: try HTTPS
                self._ping_error = ProtocolError(
                    f"the {self.label} does not answer as a container registry does (GET /v2/ at {base})",
                    f"check {self.prefix}_REGISTRY")
                raise self._ping_error
            self._base_url = base
            self._challenge = challenge or parse_challenge(response.headers.get("WWW-Authenticate"))
            self.product = products.identify(self._challenge)
            if response.status_code in ok:
                return response
            error = self._status_error(response, method, what, scope_list)
            if response.status_code == 401 and error.message == self._need_login(what).message:
                # the credentials themselves (or their absence): said once, for the whole registry
                self._ping_error = self._refused(401) if self.credentials else AuthError(
                    f"the {self.label} requires a login", f"set {self.prefix}_USERNAME and {self.prefix}_PASSWORD",
                    status=401)
                raise self._ping_error
            raise error
        raise AssertionError("unreachable")

    def _need_login(self, what: str) -> AuthError:
        if self.credentials:
            return self._refused(401)
        return AuthError(f"the {self.label} requires a login for {what}", f"set {self.prefix}_USERNAME and {self.prefix}_PASSWORD", status=401)

    def _explain(self, response: requests.Response, method: str, what: str,
                 scopes: Sequence[str]) -> HintedError | None:
        """What the site must do about this refusal, when the product's answer says (:mod:`.products`)."""
        errors = error_entries(response)
        resource, needed = _first_repository(scopes)
        token = self._tokens.get(frozenset(scopes)) if scopes and self._challenge and \
            self._challenge.scheme == "bearer" else None
        answer = products.Answer(response.status_code, method, what, resource.partition(":")[2] or None,
                                 errors, describe_errors(errors))
        registry = products.Registry(self.label, self.prefix, self.host,
                                     self.credentials.username if self.credentials else None, self.product,
                                     token.grants(resource) if token and resource else None, needed)
        return products.explain(answer, registry)

    def _status_error(self, response: requests.Response, method: str, what: str,
                      scopes: Sequence[str] = ()) -> HintedError:
        status = response.status_code
        errors = error_entries(response)
        detail = describe_errors(errors)
        explained = self._explain(response, method, what, scopes)
        response.close()
        if explained is not None:
            return explained
        if status == 401:
            return self._need_login(what)
        if status == 403:
            user = f"user {self.credentials.username!r}" if self.credentials else "anonymous access"
            return AuthError(
                f"the {self.label} does not allow {user} to {method} {what}{detail}",
                f"grant {'push' if method in ('PUT', 'POST', 'PATCH') else 'pull'} rights on that repository, "
                f"or use other {self.prefix}_USERNAME credentials",
                status=status,
            )
        if status == 404:
            return NotFoundError(f"{what} does not exist on the {self.label}{detail}", status=status)
        codes = tuple(code for code, _, _ in errors)
        permanent = [code for code in codes if code in PERMANENT_CODES]
        if permanent:
            hint = CODE_HINTS.get(permanent[0], "the registry gives the same answer to a retry")
            return RefusedError(f"the {self.label} refused {method} {what} (HTTP {status}){detail}",
                                hint.format(prefix=self.prefix), status=status, codes=codes)
        if status == 429 or status >= 500:
            return TransientError(f"the {self.label} answered {status} {response.reason} to {method} {what}{detail}",
                                  status=status, retry_after=requested_delay(response))
        return ProtocolError(f"the {self.label} answered {status} {response.reason} to {method} {what}{detail}", status=status)


def _first_repository(scopes: Sequence[str]) -> tuple[str, frozenset[str]]:
    """``("repository:NAME", actions)`` of the first repository scope (the request's own), else ``("", {})``."""
    for scope in scopes:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind == "repository" and name:
            return f"repository:{name}", frozenset(a for a in actions.split(",") if a)
    return "", frozenset()


def _rate_limit(response: requests.Response) -> str:
    """`` (ratelimit-remaining 0 of 100 per 21600 s)`` from Docker Hub's ``ratelimit-*`` headers, if sent."""
    limit, remaining = response.headers.get("ratelimit-limit"), response.headers.get("ratelimit-remaining")
    if not limit or remaining is None:
        return ""
    count, _, window = limit.partition(";w=")
    return f" (ratelimit-remaining {remaining.split(';')[0]} of {count} per {window or '?'} s)"


def _no_auth(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request


def _path(url: str) -> str:
    return urllib.parse.urlsplit(url).path
