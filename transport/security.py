"""CurveZMQ keys, roles and the ZAP authenticator: every socket encrypted, every peer known by role.

Layout of a keys directory (made by `teleop keys`; docs/security.md says what to copy where):

    KEYS/bedside.key, bedside.key_secret        the bedside's identity; consoles pin bedside.key
    KEYS/registry.toml                          who may connect: name, role, public key, revoked
    KEYS/clients/NAME.key, NAME.key_secret      one pair per console / monitor / QA station

Roles: `surgeon` may command; `station` (the on-site team's station at the bedside, `teleop station`) may
watch, raise the bedside's e-stop and reset it with a reason, nothing else; `monitor` and `qa` may watch.
The bedside's ZAP handler admits a key only if the registry lists it, unrevoked, with a role allowed on
that socket's domain (`control` or `monitoring`), and names the connection `role:name` (ZMQ User-Id) so
every message can be checked against its sender's role. Refusals are counted, queued for the bedside to
publish and record, and logged with the key's fingerprint (≤ 1 line a second, saying how many more).
The registry is re-read when its file changes, so a revocation needs no restart (a revoked key's live
connection is cut off message by message).

Pitfalls handled (GUIDE §3): the authenticator starts before any bind; every server socket sets its ZAP
domain with ZAP_ENFORCE_DOMAIN so a missing handler fails closed; CURVE_ALLOW_ANY is never used.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
import threading
import time
import tomllib
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils import z85

from base.errors import UserError
from base.runtime import gil_helper

log = logging.getLogger("security")

ROLES = ("surgeon", "station", "monitor", "qa")
DOMAIN_ROLES = {"control": ("surgeon", "station", "monitor"), "monitoring": ("surgeon", "station", "monitor", "qa"),
                "voice": ("surgeon", "station")}
"""Who may connect on each ZAP domain. `voice` (voice/link.py): the people who talk, never a monitor or QA."""
INSECURE_USER = "surgeon:insecure"


class KeyFileError(UserError, ValueError):
    """A key or registry file that cannot be used; the message says which file and what to do."""

    label = "key error"


def fingerprint(public_z85: bytes | str) -> str:
    """Short, stable name for a public key in logs: SHA-256 of the raw key, 8 groups of 2 bytes."""
    raw = z85.decode(public_z85.encode() if isinstance(public_z85, str) else public_z85)
    h = hashlib.sha256(raw).hexdigest()[:32]
    return ":".join(h[i : i + 4] for i in range(0, 32, 4))


def _check_private(path: Path) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path} is readable by other users (mode {stat.filemode(mode)}); "
                           f"run: chmod 600 {path}")


def load_public(path: str | Path) -> bytes:
    p = Path(path).expanduser()
    try:
        public, _ = zmq.auth.load_certificate(p)
    except FileNotFoundError:
        raise KeyFileError(f"public key {p} does not exist (make keys with `teleop keys`)") from None
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"public key {p} is unreadable or malformed: {exc}") from None
    if not public or len(public) != 40:
        raise KeyFileError(f"public key {p} is malformed (no 40-character public-key line)")
    return public


def load_pair(path: str | Path, make: str = "`teleop keys`") -> tuple[bytes, bytes]:
    """(public, secret) from a `.key_secret` file, refusing one that others can read. `make` is the command
    that (re)creates this file, for the message."""
    p = Path(path).expanduser()
    if not p.exists():
        raise KeyFileError(f"secret key {p} does not exist: make it with {make}")
    _check_private(p)
    try:
        public, secret = zmq.auth.load_certificate(p)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"secret key {p} is unreadable or malformed ({exc}): make a new one with {make}") from None
    if not secret or len(secret) != 40 or not public or len(public) != 40:
        raise KeyFileError(f"{p} holds no valid secret key (is it the .key file instead of .key_secret?): "
                           f"make a new one with {make}")
    return public, secret


@dataclass(frozen=True, slots=True)
class Client:
    name: str
    role: str
    public_key: str
    revoked: bool = False

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Registry:
    """The bedside's list of admitted keys, re-read whenever registry.toml changes on disk."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self._mtime: float | None = None
        self._by_key: dict[str, Client] = {}
        self._lock = threading.Lock()
        self.reload()

    def reload(self) -> None:
        try:
            mtime = self.path.stat().st_mtime_ns
            data = tomllib.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise KeyFileError(f"registry {self.path} does not exist (run `teleop keys init`)") from None
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise KeyFileError(f"registry {self.path} is unreadable or malformed: {exc}") from None
        by_key = {}
        for name, entry in (data.get("clients") or {}).items():
            role, key = entry.get("role"), entry.get("public_key", "")
            if role not in ROLES:
                raise KeyFileError(f"registry {self.path}: client {name!r} has unknown role {role!r}")
            if len(key) != 40:
                raise KeyFileError(f"registry {self.path}: client {name!r} has a malformed public key")
            by_key[key] = Client(name, role, key, bool(entry.get("revoked", False)))
        with self._lock:
            self._by_key, self._mtime = by_key, mtime

    def _fresh(self) -> None:
        try:
            if self.path.stat().st_mtime_ns != self._mtime:
                self.reload()
        except (OSError, KeyFileError) as exc:
            log.error("registry reload failed, keeping the previous one: %s", exc)

    def lookup(self, public_z85: str) -> Client | None:
        self._fresh()
        with self._lock:
            return self._by_key.get(public_z85)

    def clients(self) -> list[Client]:
        self._fresh()
        with self._lock:
            return sorted(self._by_key.values(), key=lambda c: c.name)

    def is_revoked(self, name: str) -> bool:
        return any(c.name == name and c.revoked for c in self.clients())


class KeyStore:
    """Creates and manages a keys directory (`teleop keys`). Secret files 0600, directories 0700."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        self.clients_dir = self.root / "clients"
        self.registry_path = self.root / "registry.toml"

    @property
    def server_public(self) -> Path:
        return self.root / "bedside.key"

    @property
    def server_secret(self) -> Path:
        return self.root / "bedside.key_secret"

    def client_secret(self, name: str) -> Path:
        return self.clients_dir / f"{name}.key_secret"

    def init(self) -> None:
        """Create the directory, the bedside's key pair and an empty registry (existing ones are kept)."""
        self.clients_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        os.chmod(self.clients_dir, 0o700)
        if not self.server_secret.exists():
            self._create(self.root, "bedside")
        if not self.registry_path.exists():
            self._write_registry([])

    def _create(self, where: Path, name: str) -> None:
        old = os.umask(0o077)
        try:
            pub, sec = zmq.auth.create_certificates(where, name)
        finally:
            os.umask(old)
        os.chmod(sec, 0o600)
        os.chmod(pub, 0o644)

    def _write_registry(self, clients: list[Client]) -> None:
        lines = ["# Keys the bedside admits. Edit with `teleop keys`; the bedside re-reads this file on change.", ""]
        for c in clients:
            lines += [f"[clients.{_toml_str(c.name)}]", f"role = {_toml_str(c.role)}",
                      f"public_key = {_toml_str(c.public_key)}", f"revoked = {'true' if c.revoked else 'false'}", ""]
        tmp = self.registry_path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines), encoding="utf-8")
        os.chmod(tmp, 0o644)
        tmp.replace(self.registry_path)

    def _registry(self) -> Registry:
        if not self.registry_path.exists():
            raise KeyFileError(f"{self.root} is not a keys directory (run `teleop keys init --dir {self.root}`)")
        return Registry(self.registry_path)

    def add(self, name: str, role: str) -> Client:
        if role not in ROLES:
            raise KeyFileError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
        if not name or not all(ch.isalnum() or ch in "-_." for ch in name):
            raise KeyFileError(f"client name {name!r} must be letters, digits, '-', '_' or '.'")
        clients = self._registry().clients()
        if any(c.name == name for c in clients):
            raise KeyFileError(f"a client named {name!r} exists already (revoke it and pick a new name)")
        self._create(self.clients_dir, name)
        public, _ = load_pair(self.client_secret(name))
        client = Client(name, role, public.decode("ascii"))
        self._write_registry([*clients, client])
        return client

    def revoke(self, name: str) -> Client:
        clients = self._registry().clients()
        match = [c for c in clients if c.name == name]
        if not match:
            raise KeyFileError(f"no client named {name!r} in {self.registry_path}")
        revoked = Client(name, match[0].role, match[0].public_key, True)
        self._write_registry([revoked if c.name == name else c for c in clients])
        return revoked

    def clients(self) -> list[Client]:
        return self._registry().clients()


ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_VERSION = b"1.0"
REFUSAL_LOG_EVERY_NS = 1_000_000_000
"""Refused handshakes are logged at most once a second; the rest are counted (and all are recorded)."""


def zap_reply(frames: list[bytes], decide) -> tuple[list[bytes], bool]:
    """The ZAP reply (RFC 27) to one request `frames` (version, request id, domain, address, identity,
    mechanism, credentials…) and whether it admits; `decide(domain, z85_key) -> user_id | None` judges a CURVE
    key. Anything but a well-formed CURVE request is refused: our servers speak CURVE only. Pure."""
    if len(frames) < 6 or frames[0] != ZAP_VERSION:
        request_id = frames[1] if len(frames) > 1 else b""
        return [ZAP_VERSION, request_id, b"500", b"malformed ZAP request", b"", b""], False
    request_id, domain, mechanism, creds = frames[1], frames[2], frames[5], frames[6:]
    if mechanism != b"CURVE" or len(creds) != 1 or len(creds[0]) != 32:
        return [ZAP_VERSION, request_id, b"400", b"CURVE only", b"", b""], False
    user = decide(domain.decode("utf-8", "replace"), z85.encode(creds[0]).decode("ascii"))
    if user is None:
        return [ZAP_VERSION, request_id, b"400", b"refused", b"", b""], False
    return [ZAP_VERSION, request_id, b"200", b"OK", user.encode(), b""], True


class RefusalLog:
    """Which refused handshakes to log: at most one line a second, the next one saying how many were refused
    meanwhile. A storm of wrong keys (each new: keys cost nothing to make) costs a counter, not a line each: a
    line is a write to stderr, the ZAP thread's only slow call. Pure: fed the time."""

    def __init__(self, every_ns: int = REFUSAL_LOG_EVERY_NS) -> None:
        self.every_ns = every_ns
        self._last_ns: int | None = None
        self._held = 0

    def line(self, now_ns: int, text: str) -> str | None:
        """The line to log for this refusal now, or None (counted into the next line)."""
        if self._last_ns is not None and now_ns - self._last_ns < self.every_ns:
            self._held += 1
            return None
        more = f" ({self._held} more refused handshakes not logged since the last line)" if self._held else ""
        self._held = 0
        self._last_ns = now_ns
        return text + more


class RoleAuthenticator:
    """The ZAP handler: admits registry keys by role per domain; names each connection `role:name`.

    A plain thread blocked in a zmq poll (no GIL) on the ZAP socket and a stop pipe, answering each request
    with one lookup. Not pyzmq's ThreadAuthenticator: that runs an asyncio loop whose every request registers
    and unregisters file descriptors, ~20 Python calls deep; its thread holding the GIL, preempted by a CPU hog,
    delayed the bedside's real-time loop 10–20 ms again and again (issue #19, docs/reliability.md). This thread
    is a `gil_helper`: real-time, one below the loop, when the loop goes real-time."""

    def __init__(self, context: zmq.Context, registry: Registry) -> None:
        self.context = context
        self.registry = registry
        self.refusals: deque[dict] = deque(maxlen=1000)
        """Refused handshakes for the owner to publish and record (thread-safe appends)."""
        self.counters: Counter[str] = Counter()
        self.refusal_log = RefusalLog()
        self._zap: zmq.Socket | None = None
        self._pipe: zmq.Socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind the ZAP endpoint (before any CURVE server binds) and start answering."""
        self._zap = self.context.socket(zmq.REP)
        self._zap.linger = 0
        self._zap.bind(ZAP_ENDPOINT)
        endpoint = f"inproc://zap-stop-{id(self)}"
        self._pipe = self.context.socket(zmq.PAIR)
        self._pipe.linger = 0
        self._pipe.bind(endpoint)
        theirs = self.context.socket(zmq.PAIR)
        theirs.linger = 0
        theirs.connect(endpoint)
        self._thread = threading.Thread(target=self._run, args=(self._zap, theirs), name="zap", daemon=True)
        self._thread.start()
        gil_helper(self._thread)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self, zap: zmq.Socket, stop: zmq.Socket) -> None:
        poller = zmq.Poller()
        poller.register(zap, zmq.POLLIN)
        poller.register(stop, zmq.POLLIN)
        try:
            while True:
                ready = dict(poller.poll())
                if stop in ready:
                    return
                if zap in ready:
                    reply, _ = zap_reply(zap.recv_multipart(), self.decide)
                    zap.send_multipart(reply)
        finally:
            stop.close(0)
            zap.close(0)

    def decide(self, domain: str, key: str) -> str | None:
        """`role:name` for an admitted key on `domain`; None, counted, queued and (rate-limited) logged, if not."""
        policy = DOMAIN_ROLES.get(domain)
        c = self.registry.lookup(key)
        why = None
        if policy is None:
            why = f"unknown domain {domain!r}"
        elif c is None:
            why = "unknown key"
        elif c.revoked:
            why = f"revoked key of {c.name}"
        elif c.role not in policy:
            why = f"role {c.role} of {c.name} may not use the {domain} link"
        if why is None and c is not None:
            self.counters[f"admitted_{domain}"] += 1
            return f"{c.role}:{c.name}"
        fp = fingerprint(key)
        self.counters["refused_handshakes"] += 1
        line = self.refusal_log.line(time.monotonic_ns(), f"refused {domain} connection: {why} (key {fp})")
        if line is not None:
            log.warning("%s", line)
        self.refusals.append({"domain": domain, "why": why, "fingerprint": fp})
        return None

    def stop(self) -> None:
        if self._pipe is not None:
            with contextlib.suppress(zmq.ZMQError):
                self._pipe.send(b"STOP")
            if self._thread is not None:
                self._thread.join(5)
            self._pipe.close(0)
            self._pipe = None
        self._thread = None


# ------------------------------------------------------------------------------------------- sockets


@dataclass(frozen=True)
class ServerSecurity:
    """What a bedside-side process needs: its key pair and the authenticator (None = insecure)."""

    public: bytes
    secret: bytes
    auth: RoleAuthenticator

    def apply(self, sock: zmq.Socket, domain: str) -> None:
        """Make `sock` a CURVE server in `domain`; call before bind."""
        if domain not in DOMAIN_ROLES:
            raise ValueError(f"unknown ZAP domain {domain!r}")
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret
        sock.curve_server = True
        sock.zap_domain = domain.encode()
        sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)


@dataclass(frozen=True)
class ClientSecurity:
    public: bytes
    secret: bytes
    server_public: bytes
    name: str

    def apply(self, sock: zmq.Socket) -> None:
        """Make `sock` a CURVE client that only talks to the pinned bedside key; call before connect."""
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret
        sock.curve_serverkey = self.server_public


def server_security(keys_dir: str, ctx: zmq.Context) -> ServerSecurity:
    """Load the bedside identity and registry, and start the ZAP handler (before any bind)."""
    store = KeyStore(keys_dir)
    public, secret = load_pair(store.server_secret, f"`teleop keys init --dir {store.root}` (or set "
                               "security.keys_dir to this bedside's keys directory)")
    auth = RoleAuthenticator(ctx, Registry(store.registry_path))
    auth.start()
    return ServerSecurity(public, secret, auth)


def client_security(keys_dir: str, identity: str, server_key: str = "") -> ClientSecurity:
    """Load this station's key pair and the pinned bedside public key."""
    store = KeyStore(keys_dir)
    path = store.client_secret(identity)
    if not path.expanduser().exists():
        known = sorted(p.name.removesuffix(".key_secret") for p in path.expanduser().parent.glob("*.key_secret"))
        have = f"this directory has keys for {', '.join(known)}" if known else "this directory has no station keys"
        raise KeyFileError(f"no key for identity {identity!r} ({path} does not exist; {have}): set "
                           f"security.identity to one of them, or make one on the bedside with `teleop keys add "
                           f"{identity} --role surgeon|station|monitor|qa --dir DIR` and copy it here")
    public, secret = load_pair(path, f"`teleop keys add {identity} --role ROLE --dir DIR` on the bedside")
    server_public = load_public(server_key or store.server_public)
    return ClientSecurity(public, secret, server_public, identity)


def make_throwaway_keys(root: str | Path, clients: dict[str, str]) -> KeyStore:
    """A fresh keys directory with the given {name: role} clients: demos and tests never run insecure."""
    store = KeyStore(root)
    store.init()
    for name, role in clients.items():
        store.add(name, role)
    return store


_SERVERS: dict[tuple[int, str], ServerSecurity] = {}
_SERVERS_LOCK = threading.Lock()


def for_server(cfg, ctx: zmq.Context) -> ServerSecurity | None:
    """The bedside side of `cfg.security`: None only in the explicit insecure debug mode.

    One ZAP handler per context (libzmq allows one), shared by every server socket made in it.
    """
    sc = cfg.security
    if sc.insecure:
        return None
    key = (id(ctx), str(Path(sc.keys_dir).expanduser()))
    with _SERVERS_LOCK:
        if key not in _SERVERS:
            _SERVERS[key] = server_security(sc.keys_dir, ctx)
        return _SERVERS[key]


def stop_server_security(sec: ServerSecurity | None) -> None:
    if sec is None:
        return
    with _SERVERS_LOCK:
        for k, v in list(_SERVERS.items()):
            if v is sec:
                del _SERVERS[k]
    sec.auth.stop()


def for_client(cfg) -> ClientSecurity | None:
    """A console's or monitor's side of `cfg.security`: None only in the explicit insecure debug mode."""
    sc = cfg.security
    return None if sc.insecure else client_security(sc.keys_dir, sc.identity, sc.server_key)


def user_of(frame: zmq.Frame, secure: bool) -> str:
    """`role:name` of the peer that sent `frame` (ZAP User-Id), or the insecure stand-in."""
    if not secure:
        return INSECURE_USER
    try:
        return frame.get("User-Id")
    except zmq.ZMQError:
        return "unknown"


def throwaway_keys(root: str | Path) -> list[str]:
    """Fresh keys for a demo, benchmark or test run (bedside, `surgeon`, `surgeon-2`, `station`, `monitor`,
    `qa`), and the overrides that point a process at them: security is never switched off to make a harness
    work."""
    store = make_throwaway_keys(root, {"surgeon": "surgeon", "surgeon-2": "surgeon", "station": "station",
                                       "monitor": "monitor", "qa": "qa"})
    return [f"security.keys_dir={store.root}", "security.identity=surgeon"]
