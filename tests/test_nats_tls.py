"""TLS to NATS is one setting: with `CREWBUS_NATS_TLS_CA` a service verifies the server
(a self-signed CA this test makes with `cryptography`) and sends its credentials over TLS
only; with a client certificate it passes a server that verifies clients too."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from crewbus.auth.credentials import credentials_path, generate
from crewbus.auth.permissions import CLIENT
from crewbus.auth.server_config import ServerTls, write_server_config
from crewbus.bus.connection import NatsUnreachableError, connect
from crewbus.devstack.nats_server import NatsServer
from crewbus.settings import BusSettings

pytestmark = pytest.mark.anyio


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def _certificate(name: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
                 signer: ec.EllipticCurvePrivateKey, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(signer, hashes.SHA256())


class Pki:
    """A CA and two certificates it signed (the server's for 127.0.0.1, a client's)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir()
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "crewbus test CA")])
        ca = _certificate("crewbus test CA", ca_key, ca_name, ca_key, ca=True)
        self.ca = directory / "ca.pem"
        self.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        for who in ("server", "client"):
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _certificate(f"crewbus {who}", key, ca_name, ca_key, ca=False)
            (directory / f"{who}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            _write_key(key, directory / f"{who}-key.pem")
        self.directory = directory

    def server_tls(self, verify_clients: bool) -> ServerTls:
        return ServerTls(cert_file=str(self.directory / "server.pem"),
                         key_file=str(self.directory / "server-key.pem"),
                         ca_file=str(self.ca) if verify_clients else None)


@contextmanager
def tls_server(tmp_path: Path, verify_clients: bool) -> Iterator[tuple[BusSettings, Pki]]:
    """A nats-server with the generated users and a certificate from a fresh test CA;
    yields the settings of `client` over TLS trusting that CA, and the CA's files."""
    pki = Pki(tmp_path / "pki")
    creds_dir = tmp_path / "nats-auth"
    write_server_config(creds_dir, generate(creds_dir), pki.server_tls(verify_clients))
    server = NatsServer(tmp_path / "nats", config_file=creds_dir / "nats-server.conf").start()
    try:
        yield BusSettings(nats_url=f"tls://127.0.0.1:{server.port}",
                          nats_creds=str(credentials_path(creds_dir, CLIENT)),
                          nats_tls_ca=str(pki.ca), connect_timeout_s=1), pki
    finally:
        server.stop()


async def _round_trip_over_tls(settings: BusSettings) -> None:
    nc = await connect(settings, "tls-test")
    try:
        await nc.flush()  # a round trip as `client`, over TLS
        assert nc.is_connected and nc.connected_url is not None
        assert nc.connected_url.scheme == "tls"
    finally:
        await nc.close()


async def test_a_service_connects_over_tls_verifying_the_server_with_the_ca(
    tmp_path: Path
) -> None:
    with tls_server(tmp_path, verify_clients=False) as (settings, _):
        await _round_trip_over_tls(settings)
        # Without the CA the server's certificate is not trusted: no connection at all.
        untrusting = msgspec.structs.replace(settings, nats_tls_ca=None)
        with pytest.raises(NatsUnreachableError):
            await connect(untrusting, "tls-test")


async def test_a_server_verifying_clients_admits_only_a_certificate_its_ca_signed(
    tmp_path: Path
) -> None:
    with tls_server(tmp_path, verify_clients=True) as (settings, pki):
        with pytest.raises(NatsUnreachableError):
            await connect(settings, "no-client-cert")
        with_cert = msgspec.structs.replace(
            settings, nats_tls_cert=str(pki.directory / "client.pem"),
            nats_tls_key=str(pki.directory / "client-key.pem"))
        await _round_trip_over_tls(with_cert)
