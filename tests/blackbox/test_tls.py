"""TLS: certificate by SNI, 421 for a Host naming another certificate, TLS 1.2+ only, AEAD only,
and testssl.sh finding nothing."""
import json
import shutil
import ssl
import subprocess

import pytest

from conftest import cert_serial, connect, figure, read_response, tls_connect
from h2raw import H2


def served_serial(env, sni):
    s = tls_connect(env.gw.https, sni)
    try:
        return cert_serial(s.getpeercert(binary_form=True))
    finally:
        s.close()


def test_certificate_chosen_by_sni(env):
    from cryptography import x509
    a = x509.load_pem_x509_certificate(env.a_cert[0].encode()).serial_number
    b = x509.load_pem_x509_certificate(env.b_cert[0].encode()).serial_number
    assert served_serial(env, "a.test") == a
    assert served_serial(env, "b.test") == b


def test_https_request_matching_sni(env):
    s = tls_connect(env.gw.https, "a.test")
    try:
        s.sendall(b"GET /x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        r = read_response(s)
    finally:
        s.close()
    assert r.status == 200 and r.h("x-upstream") == "pub", r


def test_host_naming_other_certificate_is_421(env):
    before = env.adm.count()
    s = tls_connect(env.gw.https, "a.test")
    try:
        s.sendall(b"GET /x HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n")
        r = read_response(s)
    finally:
        s.close()
    assert r.status == 421, r
    assert r.h("x-portier-error") == "misdirected", r
    assert env.adm.count() == before


def test_h2_authority_naming_other_certificate_is_421(env):
    before = env.adm.count()
    c = H2(env.gw.https, tls_sni="a.test")
    try:
        kind, status, _, _ = c.request(1, [(":method", "GET"), (":scheme", "https"), (":path", "/x"),
                                           (":authority", "b.test")])
    finally:
        c.close()
    assert status == 421, (kind, status)
    assert env.adm.count() == before


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_old_protocol_versions_refused(env, version):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
        ctx.minimum_version = getattr(ssl.TLSVersion, version)
        ctx.maximum_version = getattr(ssl.TLSVersion, version)
    except (ValueError, ssl.SSLError) as e:
        pytest.skip(f"this OpenSSL cannot offer {version}: {e}")
    s = connect(env.gw.https)
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        t = ctx.wrap_socket(s, server_hostname="a.test")
        t.close()
    s.close()


def test_cbc_suites_refused_on_tls12(env):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA256:"
                    "ECDHE-RSA-AES128-SHA:AES128-SHA:AES256-SHA")
    s = connect(env.gw.https)
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        t = ctx.wrap_socket(s, server_hostname="a.test")
        t.close()
    s.close()


def _testssl_bin():
    return shutil.which("testssl") or shutil.which("testssl.sh")


def test_testssl_finds_nothing(env, tmp_path):
    exe = _testssl_bin()
    if not exe:
        pytest.skip("testssl.sh is not installed (Debian package testssl.sh; scripts/test.sh installs it as root)")
    out = tmp_path / "testssl.json"
    host, port = env.gw.https
    cmd = [exe, "--quiet", "--color", "0", "--warnings", "off", "--sneaky", "--ip", host,
           "--openssl-timeout", "5", "--connect-timeout", "5",
           "-p", "-e", "-U", "--jsonfile", str(out), f"a.test:{port}"]
    try:
        p = subprocess.run(cmd + [], capture_output=True, text=True, timeout=200,
                           env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": str(tmp_path),
                                "TERM": "dumb"})
    except subprocess.TimeoutExpired:
        pytest.fail("testssl.sh did not finish within 200 s")
    assert out.exists(), f"testssl.sh wrote no JSON (rc {p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-2000:]}"
    findings = json.loads(out.read_text() or "[]")
    bad = []
    offered = []
    for f in findings:
        fid, sev, text = f.get("id", ""), f.get("severity", ""), f.get("finding", "")
        if fid in ("SSLv2", "SSLv3", "TLS1", "TLS1_1") and "not offered" not in text:
            bad.append((fid, text))
        if fid in ("TLS1_2", "TLS1_3") and text.startswith("offered"):
            offered.append(fid)
        if sev in ("HIGH", "CRITICAL", "MEDIUM") or (sev == "LOW" and fid.startswith(("cipher", "SWEET32", "LUCKY13", "BEAST"))):
            bad.append((fid, sev, text))
        if fid.startswith("cipher-tls1_2") or fid.startswith("cipher_x"):
            if "CBC" in text or "-SHA " in text or text.rstrip().endswith("SHA") or "RC4" in text:
                bad.append((fid, text))
    figure("testssl.sh", f"{len(findings)} findings, protocols offered {offered}, problems {len(bad)}")
    ids = {f.get("id") for f in findings}
    assert {"heartbleed", "ROBOT", "TLS1_3"} <= ids, f"testssl.sh did not run all checks: {sorted(ids)}"
    assert not bad, bad[:20]
    assert set(offered) <= {"TLS1_2", "TLS1_3"} and offered
