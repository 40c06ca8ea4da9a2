//! Renewal against pebble with a short certificate validity: a second ACME world that
//! `scripts/test.sh` starts with `ACME_ENV_CERT_VALIDITY_SECS` and names in
//! `PORTIER_ACME_SHORT_ENV_FILE`.
//!
//! ```text
//! export PORTIER_ACME_SHORT_ENV_FILE=$(ACME_ENV_PORT_BASE=14200 ACME_ENV_CERT_VALIDITY_SECS=30 scripts/acme-env-up)
//! cargo test -p portier --test e2e acme_renewal
//! ACME_ENV_PORT_BASE=14200 scripts/acme-env-down
//! ```

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use crate::acme::{acme_ingress, cluster_issuer, trusting, unique_host, verified_leaf, Env};
use crate::client::{peer_leaf, tls_connect};
use crate::fixture::{self, Fixture};
use crate::harness::{eventually, within, Portier};

const HOW: &str = "start pebble with a short validity: \
    export PORTIER_ACME_SHORT_ENV_FILE=$(ACME_ENV_PORT_BASE=14200 ACME_ENV_CERT_VALIDITY_SECS=30 scripts/acme-env-up)";

/// `cert-manager.io/renew-before` of the second certificate.
const RENEW_BEFORE_SECS: u64 = 20;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The serial number of a DER certificate (`tbsCertificate.serialNumber`), read with a minimal
/// DER walk: Certificate SEQUENCE → TBSCertificate SEQUENCE → [0] version → INTEGER.
fn serial(der: &[u8]) -> Vec<u8> {
    fn header(b: &[u8]) -> Option<(u8, usize, usize)> {
        let tag = *b.first()?;
        let first = *b.get(1)?;
        if first < 0x80 {
            return Some((tag, 2, usize::from(first)));
        }
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*b.get(2 + i)?);
        }
        Some((tag, 2 + n, len))
    }
    let walk = || -> Option<Vec<u8>> {
        let (_, h, _) = header(der)?;
        let tbs = der.get(h..)?;
        let (_, h, _) = header(tbs)?;
        let mut rest = tbs.get(h..)?;
        let (tag, h, len) = header(rest)?;
        if tag == 0xa0 {
            rest = rest.get(h + len..)?;
        }
        let (tag, h, len) = header(rest)?;
        (tag == 0x02).then(|| rest.get(h..h + len).map(<[u8]>::to_vec))?
    };
    walk().expect("a DER X.509 certificate with a serial number")
}

/// `GET /` on the connection opened before the renewal: it must still be open and answer.
async fn held_get(sender: &mut http1::SendRequest<Empty<Bytes>>, host: &str) {
    sender
        .ready()
        .await
        .expect("the connection opened before the renewal is still open");
    let req = http::Request::builder()
        .uri("/")
        .header(http::header::HOST, host)
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = sender
        .send_request(req)
        .await
        .expect("a request on the connection opened before the renewal");
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(&body[..], b"issued");
}

struct Watched {
    host: String,
    secret: &'static str,
    serial: Vec<u8>,
    renewal_time: u64,
    renewed_at: Option<u64>,
}

#[tokio::test]
async fn renews_at_two_thirds_or_renew_before_without_dropping_connections() {
    let Some(env) = Env::from_file_named_by("PORTIER_ACME_SHORT_ENV_FILE", HOW) else {
        return;
    };
    within(150, "ACME renewal with a short validity", async {
        let hosts = [unique_host("renew-a", "portier.test"), unique_host("renew-b", "portier.test")];
        let f = Fixture::new();
        let renew_before = format!("{RENEW_BEFORE_SECS}s");
        f.write(
            "acme.yaml",
            &[
                cluster_issuer(&env),
                fixture::static_response("ok", 200, "issued"),
                acme_ingress("a", &hosts[0], "a-tls", None),
                acme_ingress("b", &hosts[1], "b-tls", Some(&renew_before)),
            ]
            .join("---\n"),
        );
        let state = tempfile::Builder::new()
            .prefix("portier-e2e-state-")
            .tempdir()
            .expect("state dir");
        let state_path = state.path().to_str().expect("a UTF-8 temp path");
        let http = format!("127.0.0.1:{}", env.http01_port);
        let portier = Portier::start(f.path(), &["--http-listen", http.as_str(), "--state-dir", state_path]).await;
        let cfg = trusting(&env.issuer_root);

        let mut leaves = Vec::new();
        for host in &hosts {
            leaves.push(verified_leaf(&portier, host, &cfg, Duration::from_secs(60)).await);
        }
        let certs = portier.admin_json("/api/v1/acme/certificates").await;
        let field = |secret: &str, k: &str| -> u64 {
            certs
                .as_array()
                .and_then(|a| a.iter().find(|c| c["secret"]["name"] == secret))
                .and_then(|c| c[k].as_u64())
                .unwrap_or_else(|| panic!("{secret}: no {k} in {certs}"))
        };
        let mut watched = Vec::new();
        for (i, (host, secret)) in hosts.iter().zip(["a-tls", "b-tls"]).enumerate() {
            let (nb, na, renewal) = (
                field(secret, "notBefore"),
                field(secret, "notAfter"),
                field(secret, "renewalTime"),
            );
            let lifetime = na - nb;
            assert!(
                lifetime <= 120,
                "pebble issued a {lifetime} s certificate: start it with ACME_ENV_CERT_VALIDITY_SECS=30"
            );
            // cert-manager's rule: renewBefore ahead of expiry when set, else 2/3 of the lifetime.
            let want = if i == 0 {
                nb + lifetime * 2 / 3
            } else {
                na - RENEW_BEFORE_SECS
            };
            assert_eq!(renewal, want, "{secret}: renewalTime (notBefore {nb}, notAfter {na})");
            eprintln!("ACME renewal: {secret} valid {lifetime} s, renewal due {} s from now", renewal.saturating_sub(now_secs()));
            watched.push(Watched {
                host: host.clone(),
                secret,
                serial: serial(&leaves[i]),
                renewal_time: renewal,
                renewed_at: None,
            });
        }

        // A connection opened before the renewals, used throughout: it must keep working.
        let tls = tls_connect(portier.https, &hosts[0], cfg.clone())
            .await
            .expect("TLS handshake before the renewal");
        let held_serial = serial(&peer_leaf(&tls));
        let (mut sender, conn) = http1::handshake(TokioIo::new(tls)).await.expect("HTTP/1.1 handshake");
        tokio::spawn(conn);
        let mut held_requests = 1u32;
        held_get(&mut sender, &hosts[0]).await;

        let started = Instant::now();
        let deadline = watched.iter().map(|w| w.renewal_time).max().unwrap_or(0) + 20;
        while watched.iter().any(|w| w.renewed_at.is_none()) {
            assert!(
                now_secs() <= deadline,
                "not renewed by {} s after the renewal time; ACME status: {}",
                20,
                portier.admin_json("/api/v1/acme/certificates").await
            );
            held_get(&mut sender, &hosts[0]).await;
            held_requests += 1;
            for w in watched.iter_mut().filter(|w| w.renewed_at.is_none()) {
                let Ok(tls) = tls_connect(portier.https, &w.host, cfg.clone()).await else {
                    continue;
                };
                if serial(&peer_leaf(&tls)) != w.serial {
                    w.renewed_at = Some(now_secs());
                    eprintln!(
                        "ACME renewal: {} renewed, new serial seen {} s after its renewal time",
                        w.secret,
                        now_secs().saturating_sub(w.renewal_time)
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for w in &watched {
            let at = w.renewed_at.unwrap_or_default();
            assert!(
                at >= w.renewal_time,
                "{} renewed at {at}, before its renewal time {}",
                w.secret,
                w.renewal_time
            );
            // The new certificate verifies against pebble's root like the first one.
            verified_leaf(&portier, &w.host, &cfg, Duration::from_secs(5)).await;
        }
        held_get(&mut sender, &hosts[0]).await;
        held_requests += 1;
        assert_eq!(
            held_serial, watched[0].serial,
            "the held connection was opened with the first certificate"
        );
        eprintln!(
            "ACME renewal: both renewed within {:.1} s; {held_requests} requests on one connection across the swap",
            started.elapsed().as_secs_f64()
        );

        let metrics = eventually(Duration::from_secs(10), "renewals counted", || async {
            let text = portier.admin_get("/metrics").await.text();
            text.contains(r#"reason="renew",result="success"}"#).then_some(text)
        })
        .await;
        assert!(
            metrics.contains(
                r#"portier_acme_certificate_issuances_total{issuer_kind="ClusterIssuer",issuer_name="pebble",reason="issue",result="success"} 2"#
            ),
            "{metrics}"
        );
    })
    .await;
}
