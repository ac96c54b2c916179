"""rekap.tls: the local CA and server certificate, and the contexts built from settings.

Certificates are checked with ``cryptography`` and by real TLS handshakes between
an ``ssl`` server and client in memory (no socket), so a missing SAN or a wrong
key usage fails here the way it would fail on a tablet.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import shlex
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from rekap.errors import ConfigError
from rekap.settings import Settings
from rekap.tls import (
    RENEW_WITHIN,
    client_context,
    init_local,
    issue_server_cert,
    local_url,
    make_local_ca,
    server_context,
)
from tests.support.env import clean_env, run_cli


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return ({str(ip) for ip in ext.get_values_for_type(x509.IPAddress)},
            set(ext.get_values_for_type(x509.DNSName)))


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, hostname: str) -> None:
    """A full TLS handshake in memory; raises ssl.SSLError when the client refuses the server."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out, server_hostname=hostname)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"c": False, "s": False}
    for _ in range(20):
        for name, obj, src, dst in (("c", c, c_out, s_in), ("s", s, s_out, c_in)):
            if not done[name]:
                try:
                    obj.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
            data = src.read()
            if data:
                dst.write(data)
        if all(done.values()):
            return
    raise AssertionError("handshake did not finish")


def tls_settings(d: Path, **more: object) -> Settings:
    made = init_local(d)
    return dataclasses.replace(Settings(), tls_cert=made.server.cert, tls_key=made.server.key,
                               tls_ca=made.ca.cert, **more)  # type: ignore[arg-type]


def test_init_makes_a_ca_and_a_server_cert_for_ips_and_names(tmp_path: Path) -> None:
    made = init_local(tmp_path / "tls", ["192.168.1.20", "Kasir.Local", "localhost"])
    assert made.hosts == ("127.0.0.1", "localhost", "192.168.1.20", "Kasir.Local")
    assert made.ca.created and made.server.created
    ca, cert = load(made.ca.cert), load(made.server.cert)

    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert sans(cert) == ({"127.0.0.1", "192.168.1.20"}, {"localhost", "kasir.local"})
    # IPs must be IP SANs: a tablet compares an IP URL against those only.
    ips = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("192.168.1.20") in ips.get_values_for_type(x509.IPAddress)

    now = dt.datetime.now(dt.UTC)
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=397) <= life <= dt.timedelta(days=398)  # iOS refuses > 825 days
    assert cert.not_valid_before_utc < now < cert.not_valid_after_utc
    assert ca.not_valid_after_utc - now > dt.timedelta(days=3000)

    for key in (made.ca.key, made.server.key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE((tmp_path / "tls").stat().st_mode) == 0o700


def test_the_certificate_passes_a_real_handshake_only_for_its_names(tmp_path: Path) -> None:
    s = tls_settings(tmp_path / "tls")
    server = server_context(s)
    assert server is not None and server.minimum_version == ssl.TLSVersion.TLSv1_2
    client = client_context(s)
    assert client.verify_mode == ssl.CERT_REQUIRED and client.check_hostname
    for host in ("127.0.0.1", "localhost"):
        handshake(server, client, host)
    with pytest.raises(ssl.SSLCertVerificationError, match=r"mismatch|doesn't match"):
        handshake(server, client, "10.9.9.9")
    # Without REKAP_TLS_CA the system's CAs do not know the local CA.
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        handshake(server, client_context(dataclasses.replace(s, tls_ca=None)), "127.0.0.1")


def test_init_again_reuses_both_byte_for_byte(tmp_path: Path) -> None:
    first = init_local(tmp_path)
    before = {p: p.read_bytes() for p in (first.ca.cert, first.ca.key, first.server.cert,
                                          first.server.key)}
    again = init_local(tmp_path)
    assert not again.ca.created and not again.server.created
    assert {p: p.read_bytes() for p in before} == before


def test_a_cert_near_its_end_is_renewed_under_the_same_ca(tmp_path: Path) -> None:
    ca = make_local_ca(tmp_path)
    short = issue_server_cert(ca, tmp_path, days=RENEW_WITHIN.days - 1)
    old = short.cert.read_bytes()
    renewed = init_local(tmp_path)
    assert renewed.server.created and not renewed.ca.created
    assert renewed.server.cert.read_bytes() != old
    assert renewed.server.not_after - dt.datetime.now(dt.UTC) > dt.timedelta(days=390)
    load(renewed.server.cert).verify_directly_issued_by(load(ca.cert))


def test_a_new_host_or_a_new_ca_means_a_new_cert(tmp_path: Path) -> None:
    first = init_local(tmp_path)
    wider = init_local(tmp_path, ["10.1.2.3"])
    assert wider.server.created and not wider.ca.created
    assert "10.1.2.3" in sans(load(wider.server.cert))[0]
    assert not init_local(tmp_path).server.created  # a subset of the SANs: still reused

    # A CA about to expire is replaced, and the certificate it signed with it.
    near = make_local_ca(tmp_path / "x", days=RENEW_WITHIN.days - 1)
    for name in ("ca.pem", "ca-key.pem"):
        (tmp_path / name).write_bytes((tmp_path / "x" / name).read_bytes())
    again = init_local(tmp_path, ["10.1.2.3"])
    assert again.ca.created and again.server.created
    assert load(again.ca.cert).subject == load(first.ca.cert).subject
    assert load(again.ca.cert).serial_number != load(near.cert).serial_number
    load(again.server.cert).verify_directly_issued_by(load(again.ca.cert))


def test_a_cert_of_another_ca_or_a_foreign_key_is_replaced(tmp_path: Path) -> None:
    mine, other = init_local(tmp_path / "mine"), init_local(tmp_path / "other")
    other_cert = other.server.cert.read_bytes()
    mine.server.cert.write_bytes(other_cert)  # a cert whose key is not server-key.pem
    fixed = init_local(tmp_path / "mine")
    assert fixed.server.created and not fixed.ca.created
    load(fixed.server.cert).verify_directly_issued_by(load(mine.ca.cert))

    mine.server.cert.write_bytes(other_cert)
    mine.server.key.write_bytes(other.server.key.read_bytes())  # a matching pair, wrong CA
    assert init_local(tmp_path / "mine").server.created


def test_only_cert_or_only_key_is_a_config_error(tmp_path: Path) -> None:
    made = init_local(tmp_path)
    for var in ("REKAP_TLS_CERT", "REKAP_TLS_KEY"):
        with pytest.raises(ConfigError, match="REKAP_TLS_CERT and REKAP_TLS_KEY go together"):
            server_context(Settings.from_env({var: str(made.server.cert)}))
    assert server_context(Settings()) is None
    assert local_url(Settings(), 16067) == "http://127.0.0.1:16067"
    assert local_url(Settings.from_env({"REKAP_TLS_CA": str(made.ca.cert)}), 16067) \
        == "https://127.0.0.1:16067"


def test_unreadable_or_mismatched_files_name_the_variable(tmp_path: Path) -> None:
    a, b = init_local(tmp_path / "a"), init_local(tmp_path / "b")
    base = Settings()
    with pytest.raises(ConfigError, match=r"REKAP_TLS_KEY=.*missing.pem cannot be read"):
        server_context(dataclasses.replace(base, tls_cert=a.server.cert, tls_key=tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match=r"REKAP_TLS_CERT=.* not a PEM certificate and its key"):
        server_context(dataclasses.replace(base, tls_cert=a.server.cert, tls_key=b.server.key))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="not a PEM certificate and its key"):
        server_context(dataclasses.replace(base, tls_cert=garbage, tls_key=a.server.key))
    with pytest.raises(ConfigError, match=r"REKAP_TLS_CA=.* not a PEM CA certificate"):
        client_context(dataclasses.replace(base, tls_ca=garbage))
    with pytest.raises(ConfigError, match=r"REKAP_TLS_CA=.* cannot be read"):
        client_context(dataclasses.replace(base, tls_ca=tmp_path / "nope.pem"))


def test_cli_tls_init_prints_three_export_lines(tmp_path: Path) -> None:
    env = clean_env(REKAP_RUNTIME_DIR=str(tmp_path / "runtime"))
    done = run_cli(env, "tls", "init", "--host", "192.168.7.7")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split("=")[0] for line in lines] == [
        "export REKAP_TLS_CERT", "export REKAP_TLS_KEY", "export REKAP_TLS_CA"]
    values = {k.removeprefix("export "): shlex.split(v)[0] for k, v in (x.split("=", 1) for x in lines)}
    assert values["REKAP_TLS_CA"] == str(tmp_path / "runtime" / "tls" / "ca.pem")
    assert "192.168.7.7" in sans(load(Path(values["REKAP_TLS_CERT"])))[0]
    assert "made" in done.stderr
    # What it printed is what rekap reads back.
    s = Settings.from_env(values)
    handshake(server_context(s), client_context(s), "192.168.7.7")  # type: ignore[arg-type]
    again = run_cli(env, "tls", "init", "--host", "192.168.7.7")
    assert again.stdout == done.stdout and "reused" in again.stderr and "made" not in again.stderr
