"""What `dossier serve` is told: where the store and trust store are, who may call it, where it
listens, and whether it also runs the collector's loop."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ServiceError

__all__ = ["DEFAULT_LISTEN", "MAX_UPLOAD_BYTES", "ServiceSettings", "parse_listen"]

DEFAULT_LISTEN = "127.0.0.1:8080"
#: An uploaded envelope is read whole before it is verified: the verifier's own bound on an
#: envelope (`verifier.policy.MAX_ENVELOPE_BYTES`) plus room for the multipart framing.
MAX_UPLOAD_BYTES = 64 * 1024 * 1024 + 64 * 1024


def parse_listen(listen: str) -> tuple[str, int]:
    """'HOST:PORT' ('[v6]:PORT' for IPv6) as (host, port); raises ServiceError."""
    host, sep, port_text = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ServiceError(f"expected --listen HOST:PORT (e.g. {DEFAULT_LISTEN}), found {listen!r}")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    """True when `host` names only this machine (a name other than 'localhost' is not trusted to)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServiceSettings:
    """The service's configuration; `create_app` reads nothing else."""

    store: Path
    trust_store: Path | None = None
    #: The tokens file (`dossier serve token add`); None: no tokens, loopback only, no admin calls.
    tokens_file: Path | None = None
    listen: str = DEFAULT_LISTEN
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: With an inventory the process also polls it (the collector's loop, in a thread).
    inventory: Path | None = None
    #: Distributed collection's configuration (docs/distributed.md): read the shared PostgreSQL
    #: index; workers poll, so not with `inventory`.
    distributed_config: Path | None = None
    collect_interval_s: float = 300.0
    collector_key: Path | None = None
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    #: Verify every device's newest outputs in the background at start (the first fleet request
    #: would otherwise pay for the whole fleet: seconds for a thousand devices).
    warm_on_start: bool = True
    #: Answer only requests whose Host names this machine while reading is open (loopback, no
    #: token): a page of another site rebinding its name to 127.0.0.1 could read it otherwise.
    #: `dossier serve` turns it on; library callers (tests with their own Host) choose.
    check_host: bool = False
    #: Extra settings for routers added by other parts (dashboard, EAR, webhooks), by name.
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def host_port(self) -> tuple[str, int]:
        return parse_listen(self.listen)

    def check(self, *, has_tokens: bool) -> None:
        """Refuse a configuration that would serve badly; raises ServiceError."""
        host, _ = self.host_port
        if not is_loopback(host) and not has_tokens:
            raise ServiceError(f"expected an API token before listening on {host} (not loopback), found none "
                               "in the tokens file; add one with `dossier serve token add NAME`, or listen on "
                               "127.0.0.1")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ServiceError("expected both --tls-cert and --tls-key, found only "
                               f"{'--tls-cert' if self.tls_cert else '--tls-key'}")
