//! The embedded default (`rta-engine demo`): a generated population and the
//! example strategies. Part of the product, imported by the composition root
//! only: nothing in strategy or decision depends on demo data.

pub mod population;

/// The demo strategy file (one strategy per template of the domain).
pub const DEMO_STRATEGIES: &str = include_str!("../../deploy/demo/strategies.toml");
