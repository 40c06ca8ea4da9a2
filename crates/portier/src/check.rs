//! `portier check DIR`: the same provider and compile code as `serve`, offline.

use std::process::ExitCode;

use portier_compile::{compile, Options};
use portier_model::{ModelStore, ProviderId};
use portier_provider_files::FileProvider;

use crate::{fallback, CheckArgs};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub fn run(args: &CheckArgs) -> ExitCode {
    let mut provider = FileProvider::new(&args.dir);
    let change = match provider.scan() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut store = ModelStore::new();
    store.apply(ProviderId("files"), change);
    let model = store.model();
    let fallback = match fallback::generate() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let opts = Options {
        ingress_class: args.class.ingress_class.clone(),
        controller_name: args.class.controller_name.clone(),
        fallback_cert: fallback,
        configmap: args.class.configmap.clone(),
    };
    let compiled = compile(&model, &opts);
    let errors = compiled.diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = compiled.diagnostics.len() - errors;
    match args.output {
        Format::Text => {
            for d in &compiled.diagnostics {
                println!("{d}\n");
            }
            let routes = compiled.snapshot.routes().len();
            println!(
                "{}: {} objects, {routes} routes, {errors} errors, {warnings} warnings",
                args.dir.display(),
                model.len()
            );
        }
        Format::Json => {
            let view = portier_admin::diagnostics_view(&compiled.snapshot);
            match serde_json::to_string_pretty(&view) {
                Ok(s) => println!("{s}"),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            }
        }
    }
    if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
