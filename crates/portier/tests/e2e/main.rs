//! End-to-end tests: the real `portier` binary on 127.0.0.1, talking to in-process upstreams and
//! clients over real sockets (STYLE.md §11). One test binary, so the harness compiles once.
//!
//! Every listener binds port 0 and the harness reads the real addresses back from the binary's
//! `listening` log lines; every wait has a timeout that names what it waited for; a failing test
//! prints the child's log. Tests share nothing but the test CA, so they run in parallel.

mod client;
mod fixture;
mod harness;
mod upstream;

mod access_log;
mod acme;
mod acme_causes;
mod acme_renewal;
mod backends;
mod check;
mod h2c;
mod proxying;
mod quickstart;
mod redirect;
mod reload;
mod routing;
mod shutdown;
mod tls;
mod workers;
