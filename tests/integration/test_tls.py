"""TLS and mTLS from certificate files, with certificates made for the test by `cryptography`."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from baton.server.app import BatonServer
from baton.store import open_store
from tests.support.server import make_config


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer if issuer is not None else (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(value: x509.Certificate | ec.EllipticCurvePrivateKey) -> bytes:
    if isinstance(value, x509.Certificate):
        return value.public_bytes(serialization.Encoding.PEM)
    return value.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """A CA, a server certificate and a client certificate, as PEM files."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("baton-test-ca", ca_key, None, ca=True)
    files: dict[str, Path] = {"ca": tmp_path / "ca.pem"}
    files["ca"].write_bytes(_pem(ca))
    for who in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(who, key, (ca.subject, ca_key), ca=False)
        files[f"{who}_cert"] = tmp_path / f"{who}.pem"
        files[f"{who}_key"] = tmp_path / f"{who}-key.pem"
        files[f"{who}_cert"].write_bytes(_pem(cert))
        files[f"{who}_key"].write_bytes(_pem(key))
    return files


async def _serve(tmp_path: Path, env: dict[str, str]) -> AsyncIterator[int]:
    config = make_config(tmp_path, **env)
    store = await open_store(config.storage, auto_migrate=True)
    server = await BatonServer.create(config, store)
    port = await server.start(host="127.0.0.1", port=0)
    try:
        yield port
    finally:
        await server.stop(grace=0.5, drain=0)
        await store.close()


async def _check(port: int, credentials: grpc.ChannelCredentials) -> int:
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        return int(response.status)


async def test_tls(tmp_path: Path, pki: dict[str, Path]) -> None:
    env = {"BATON_TLS_CERT_FILE": str(pki["server_cert"]), "BATON_TLS_KEY_FILE": str(pki["server_key"])}
    async for port in _serve(tmp_path, env):
        trusted = grpc.ssl_channel_credentials(root_certificates=pki["ca"].read_bytes())
        assert await _check(port, trusted) == health_pb2.HealthCheckResponse.SERVING
        # Plaintext against a TLS listener does not get through.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as plain:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=2)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mtls_requires_a_client_certificate(tmp_path: Path, pki: dict[str, Path]) -> None:
    env = {
        "BATON_TLS_CERT_FILE": str(pki["server_cert"]),
        "BATON_TLS_KEY_FILE": str(pki["server_key"]),
        "BATON_TLS_CLIENT_CA_FILE": str(pki["ca"]),
    }
    async for port in _serve(tmp_path, env):
        with_certificate = grpc.ssl_channel_credentials(
            root_certificates=pki["ca"].read_bytes(),
            private_key=pki["client_key"].read_bytes(),
            certificate_chain=pki["client_cert"].read_bytes(),
        )
        assert await _check(port, with_certificate) == health_pb2.HealthCheckResponse.SERVING
        without = grpc.ssl_channel_credentials(root_certificates=pki["ca"].read_bytes())
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _check(port, without)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
