"""Both clients over mTLS, with a CA, server and client certificates made for the test."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from baton.client import AsyncClient, Client, TLSConfig, UnavailableError
from tests.support.server import ADMIN_KEY, RunningServer


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer is not None else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is not None:
        names = [x509.DNSName("baton.test"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """ca.pem, server.pem / server-key.pem and client.pem / client-key.pem."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("baton-test-ca", ca_key, None, ca_key)
    files = {"ca": tmp_path / "ca.pem"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for who in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        files[who] = tmp_path / f"{who}.pem"
        files[f"{who}_key"] = tmp_path / f"{who}-key.pem"
        files[who].write_bytes(_certificate(who, key, ca, ca_key).public_bytes(serialization.Encoding.PEM))
        files[f"{who}_key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return files


@pytest.fixture
def server_env(pki: dict[str, Path]) -> dict[str, str]:
    return {
        "BATON_TLS_CERT_FILE": str(pki["server"]),
        "BATON_TLS_KEY_FILE": str(pki["server_key"]),
        "BATON_TLS_CLIENT_CA_FILE": str(pki["ca"]),
    }


async def test_mtls(server: RunningServer, pki: dict[str, Path]) -> None:
    tls = TLSConfig(ca_cert_file=pki["ca"], client_cert_file=pki["client"], client_key_file=pki["client_key"])
    async with await AsyncClient.connect(server.target, api_key=ADMIN_KEY, tls=tls) as client:
        assert (await client.auth.who_am_i()).user.username == "admin"
    named = TLSConfig(pki["ca"], pki["client"], pki["client_key"], server_name="baton.test")
    async with await AsyncClient.connect(
        f"localhost:{server.target.rsplit(':', 1)[1]}", api_key=ADMIN_KEY, tls=named
    ) as client:
        assert (await client.auth.who_am_i()).user.username == "admin"

    def sync() -> None:
        with Client.connect(server.target, api_key=ADMIN_KEY, tls=tls) as sync_client:
            assert sync_client.auth.who_am_i().user.username == "admin"
        with Client.connect(server.target, api_key=ADMIN_KEY) as plain, pytest.raises(UnavailableError):
            plain.auth.who_am_i(timeout=1)

    await asyncio.to_thread(sync)
