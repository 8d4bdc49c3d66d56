"""TLS / mTLS for the edge server and its clients, and a small development PKI
(a CA, a server certificate for 127.0.0.1 / localhost and a client certificate)."""

from __future__ import annotations

import datetime as _dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import grpc


@dataclass(frozen=True)
class TLSConfig:
    cert_file: Path                 # server certificate chain (PEM)
    key_file: Path                  # server private key (PEM)
    client_ca_file: Path | None = None  # set -> mTLS: clients must present a cert signed by this CA

    def server_credentials(self) -> grpc.ServerCredentials:
        for name in ("cert_file", "key_file", "client_ca_file"):
            p = getattr(self, name)
            if p is not None and not Path(p).is_file():
                raise FileNotFoundError(f"tls {name}: {p} not found")
        ca = Path(self.client_ca_file).read_bytes() if self.client_ca_file else None
        return grpc.ssl_server_credentials([(Path(self.key_file).read_bytes(), Path(self.cert_file).read_bytes())],
                                           root_certificates=ca, require_client_auth=ca is not None)


def channel_credentials(ca_file: Path, cert_file: Path | None = None, key_file: Path | None = None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=Path(ca_file).read_bytes(),
        private_key=Path(key_file).read_bytes() if key_file else None,
        certificate_chain=Path(cert_file).read_bytes() if cert_file else None,
    )


def write_dev_pki(directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"), days: int = 30) -> dict[str, Path]:
    """ca.pem, server.pem / server.key, client.pem / client.key under ``directory``.
    For development and tests only (short-lived, EC P-256)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = _dt.datetime.now(_dt.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def key_pem(k):
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("edgepilot dev CA")).issuer_name(name("edgepilot dev CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=days))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(cn, usage, sans):
        key = ec.generate_private_key(ec.SECP256R1())
        b = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject).public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=days))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return key, b.sign(ca_key, hashes.SHA256())

    sans = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    skey, scert = leaf("edgepilot edge server", ExtendedKeyUsageOID.SERVER_AUTH, sans)
    ckey, ccert = leaf("edgepilot device", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    pem = serialization.Encoding.PEM
    out = {"ca": directory / "ca.pem", "server_cert": directory / "server.pem", "server_key": directory / "server.key",
           "client_cert": directory / "client.pem", "client_key": directory / "client.key"}
    out["ca"].write_bytes(ca.public_bytes(pem))
    out["server_cert"].write_bytes(scert.public_bytes(pem))
    out["server_key"].write_bytes(key_pem(skey))
    out["client_cert"].write_bytes(ccert.public_bytes(pem))
    out["client_key"].write_bytes(key_pem(ckey))
    for k in ("server_key", "client_key"):
        out[k].chmod(0o600)
    return out
