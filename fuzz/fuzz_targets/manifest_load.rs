//! Any text given to the manifest parser ends in objects and diagnostics, never a panic, a hang
//! or an exhausted stack (STYLE.md §6, §12); and where serde_json reads a text as JSON, the YAML
//! loader reads the same values.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    let _ = portier_provider_files::parse_manifests("fuzz.yaml", s);
    portier_provider_files::check_json_fast_path(s);
});
