//! HTTP/2 with prior knowledge (h2c) on the plain listener.

use http::Version;
use tokio::net::TcpStream;

use crate::client;
use crate::fixture::{self, Fixture};
use crate::harness::{within, Portier};
use crate::upstream::{echoed_header, Upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prior_knowledge_h2_on_the_plain_listener() {
    within(20, "h2c", async {
        let up = Upstream::echo("h2c").await;
        let f = Fixture::new();
        f.write("svc.yaml", &fixture::service("h2c", &[&up]));
        f.write(
            "ingress.yaml",
            &fixture::ingress("h2c", Some("h2c.e2e.test"), &[("/", "Prefix", "h2c")]),
        );
        let portier = Portier::start(f.path(), &[]).await;

        let tcp = TcpStream::connect(portier.http).await.expect("connect");
        let sender = client::h2_handshake(tcp).await;
        // Ten concurrent streams on the one connection.
        let mut tasks = Vec::new();
        for i in 0..10 {
            let mut sender = sender.clone();
            tasks.push(tokio::spawn(async move {
                client::send_h2(
                    &mut sender,
                    client::req_h2("http", "h2c.e2e.test", &format!("/s/{i}?q={i}")),
                )
                .await
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            let r = t.await.expect("stream task");
            assert_eq!(r.version, Version::HTTP_2, "stream {i}");
            assert_eq!(r.status, 200, "stream {i}: {}", r.text());
            let echo = r.json();
            assert_eq!(
                echo["uri"],
                format!("/s/{i}?q={i}"),
                "stream {i}: target at the upstream"
            );
            assert_eq!(
                echoed_header(&echo, "host"),
                ["h2c.e2e.test"],
                "stream {i}: :authority becomes Host"
            );
            assert_eq!(echoed_header(&echo, "x-forwarded-proto"), ["http"], "stream {i}");
        }
        assert_eq!(up.hits(), 10);
    })
    .await;
}
