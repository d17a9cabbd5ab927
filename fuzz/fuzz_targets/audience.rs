//! The audience language: parse, type-check and compile against the shipped
//! taxonomy, then evaluate what compiled on the test profiles. An error must
//! point inside the text; evaluation must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rta_engine::strategy::{compile::compile, lang};
use rta_engine_fuzz::{TAXONOMY, each_context};

fuzz_target!(|text: &str| {
    let ast = match lang::parse(text) {
        Ok(ast) => ast,
        Err(e) => {
            assert!(e.pos.offset <= text.len(), "{e} outside {text:?}");
            return;
        }
    };
    let expr = match compile(&ast, &TAXONOMY) {
        Ok(expr) => expr,
        Err(e) => {
            assert!(e.pos.offset <= text.len(), "{e} outside {text:?}");
            return;
        }
    };
    each_context(|ctx| {
        let _ = expr.eval(ctx);
    });
});
