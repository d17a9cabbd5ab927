//! The engine's config file (`rta-engine serve --config`): TOML parse and
//! range validation, then the token tables the start-up builds from it.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use rta_engine::app::config::Config;
use rta_engine::serve::tokens::BearerTokens;

fuzz_target!(|text: &str| {
    let Ok(cfg) = Config::from_toml(text, Path::new("fuzz.toml")) else {
        return;
    };
    let _ = BearerTokens::from_entries(&cfg.grpc.client_tokens);
    let _ = BearerTokens::from_entries(&cfg.admin.tokens);
});
