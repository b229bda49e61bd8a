"""The cluster's certificates: one CA, the API server's serving certificate,
client certificates, and the service-account signing key.

Every certificate is X.509 v3 with its key usages stated: rustls (and so
kube-rs) rejects v1 certificates, which is what `openssl x509 -req` makes
without an extensions file.
"""
import datetime
import ipaddress
import pathlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Long enough for any test run, short enough not to matter if one leaks.
VALIDITY = datetime.timedelta(days=7)


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path, key):
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _name(cn, org=None):
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _builder(subject, issuer, public_key):
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + VALIDITY))


def _issue(dir, stem, ca_key, ca_cert, subject, usages, sans=()):
    key = _key()
    b = (_builder(subject, ca_cert.subject, key.public_key())
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True,
                                      content_commitment=False, data_encipherment=False,
                                      key_agreement=False, key_cert_sign=False, crl_sign=False,
                                      encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                        critical=False))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    cert = b.sign(ca_key, hashes.SHA256())
    _write_key(dir / f"{stem}.key", key)
    (dir / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def create(dir: pathlib.Path, node_ip, api_service_ip, node_name):
    """Writes every file the components need into `dir`, unless already there."""
    if (dir / ".complete").exists():
        return
    dir.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    subject = _name("lameduck-local-ca")
    ca_cert = (_builder(subject, subject, ca_key.public_key())
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                            content_commitment=False, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=True, crl_sign=True,
                                            encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                              critical=False)
               .sign(ca_key, hashes.SHA256()))
    _write_key(dir / "ca.key", ca_key)
    (dir / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))

    server = [ExtendedKeyUsageOID.SERVER_AUTH]
    client = [ExtendedKeyUsageOID.CLIENT_AUTH]
    dns = ["kubernetes", "kubernetes.default", "kubernetes.default.svc",
           "kubernetes.default.svc.cluster.local", "localhost"]
    ips = [node_ip, api_service_ip, "127.0.0.1"]
    _issue(dir, "apiserver", ca_key, ca_cert, _name("kube-apiserver"), server,
           [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips])
    # The kubelet serves logs, exec and the pod proxy to the API server.
    _issue(dir, "kubelet", ca_key, ca_cert, _name(f"system:node:{node_name}", "system:nodes"), server + client,
           [x509.DNSName(node_name), x509.IPAddress(ipaddress.ip_address(node_ip))])
    # Cluster administrator: the user's kubectl, helm, the e2e suite, and the
    # API server's own client certificate towards the kubelet.
    _issue(dir, "admin", ca_key, ca_cert, _name("lameduck-admin", "system:masters"), client)
    _issue(dir, "kube-controller-manager", ca_key, ca_cert, _name("system:kube-controller-manager"), client)
    _issue(dir, "kube-scheduler", ca_key, ca_cert, _name("system:kube-scheduler"), client)
    _issue(dir, "kube-proxy", ca_key, ca_cert, _name("system:kube-proxy", "system:node-proxier"), client)
    _issue(dir, "node", ca_key, ca_cert, _name(f"system:node:{node_name}", "system:nodes"), client)

    sa = _key()
    _write_key(dir / "sa.key", sa)
    (dir / "sa.pub").write_bytes(sa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (dir / ".complete").write_text("")
