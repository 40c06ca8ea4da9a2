//! The `portier` binary: command line, static configuration and the wiring of the pipeline
//! provider → model → compile → snapshot → data plane.

mod acme;
mod check;
mod fallback;
mod inspect;
mod resident;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Kubernetes ingress controller and API gateway.
#[derive(Debug, Parser)]
#[command(name = "portier", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the Ingresses found in a directory of manifests, reloading on every change.
    Serve(ServeArgs),
    /// Validate a directory of manifests offline; exit 1 when anything is wrong.
    Check(CheckArgs),
    /// List ACME certificates, orders or challenges of a running `portier serve`.
    Get(GetArgs),
    /// Show one ACME certificate with its conditions and recent attempts.
    Describe(DescribeArgs),
}

#[derive(Debug, Args)]
struct GetArgs {
    #[arg(value_enum)]
    what: inspect::Resource,
    /// Admin listener of the running `portier serve`.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9901")]
    admin: SocketAddr,
}

#[derive(Debug, Args)]
struct DescribeArgs {
    #[arg(value_enum)]
    what: inspect::Describable,
    /// `NAME` or `NAMESPACE/NAME` of the certificate (its Secret).
    name: String,
    /// Admin listener of the running `portier serve`.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9901")]
    admin: SocketAddr,
}

/// Which Ingresses are ours, and the global settings (shared by `serve` and `check`).
#[derive(Debug, Clone, Args)]
struct ClassArgs {
    /// Value of the legacy `kubernetes.io/ingress.class` annotation that selects this controller.
    #[arg(long, default_value = "portier")]
    ingress_class: String,
    /// `spec.controller` of the IngressClasses this controller serves.
    #[arg(long, default_value = "portier.dev/ingress-controller")]
    controller_name: String,
    /// ingress-nginx-style ConfigMap with global settings (timeouts, limits, keep-alive), read
    /// from the config directory. See docs/configuration.md for the keys.
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = parse_configmap_ref)]
    configmap: Option<(String, String)>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Directory of Kubernetes manifests (*.yaml, *.yml; searched recursively).
    #[arg(long, value_name = "DIR")]
    config: PathBuf,
    /// Plain HTTP listener. Port 0 picks a free port (logged).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8080")]
    http_listen: SocketAddr,
    /// HTTPS listener.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8443")]
    https_listen: SocketAddr,
    /// Admin listener: /healthz, /readyz, /metrics, /api/v1/*.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9901")]
    admin_listen: SocketAddr,
    /// Where portier keeps state across restarts: the fallback certificate, ACME account keys
    /// (`accounts/`) and issued certificates (`secrets/`, Secret manifests). Without it the
    /// fallback certificate lives in memory and ACME state goes to `./portier-state`.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    #[command(flatten)]
    class: ClassArgs,
    /// Access log: `stdout`, `off`, or a file path (appended to).
    #[arg(long, value_name = "stdout|off|PATH", default_value = "stdout")]
    access_log: String,
    /// How long SIGTERM waits for in-flight requests before closing connections.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    drain_timeout: u64,
    /// Port written into HTTP→HTTPS redirects; defaults to the HTTPS listener's port.
    #[arg(long, value_name = "PORT")]
    https_redirect_port: Option<u16>,
    /// Threads serving requests, each with its own event loop; defaults to the number of CPUs
    /// the process may use. With 1, one thread runs everything.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    worker_threads: Option<u16>,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// Directory of Kubernetes manifests.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    #[command(flatten)]
    class: ClassArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = check::Format::Text)]
    output: check::Format,
}

/// `--configmap NAMESPACE/NAME`: both parts non-empty Kubernetes names.
fn parse_configmap_ref(s: &str) -> Result<(String, String), String> {
    let valid = |part: &str| {
        !part.is_empty()
            && part.len() <= 253
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    match s.split_once('/') {
        Some((ns, name)) if valid(ns) && valid(name) => Ok((ns.to_owned(), name.to_owned())),
        _ => Err(format!(
            "expected NAMESPACE/NAME such as ingress-nginx/ingress-nginx-controller, got {s:?}"
        )),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Both rustls providers can end up in one build through dependencies; pick ours explicitly so
    // nothing panics asking which one to use.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Get(GetArgs { what, admin }) => print(inspect::get(admin, what)),
        Command::Describe(DescribeArgs { what, name, admin }) => print(inspect::describe(admin, what, &name)),
        Command::Serve(args) => match serve::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn print(result: anyhow::Result<String>) -> ExitCode {
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configmap_ref_is_namespace_slash_name() {
        let cases = [
            (
                "ingress-nginx/ingress-nginx-controller",
                Some(("ingress-nginx", "ingress-nginx-controller")),
            ),
            ("default/portier.settings", Some(("default", "portier.settings"))),
            ("name-only", None),
            ("/name", None),
            ("ns/", None),
            ("a/b/c", None),
            ("NS/Name", None),
            ("", None),
        ];
        for (input, want) in cases {
            let got = parse_configmap_ref(input).ok();
            let want = want.map(|(a, b)| (a.to_owned(), b.to_owned()));
            assert_eq!(got, want, "{input:?}");
        }
    }
}
