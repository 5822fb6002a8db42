//! List prices of OpenAI models, for the cost line of `run`'s summary.
//!
//! US dollars per million tokens (input, output) at the standard (direct, not Batch)
//! tier, as openai.com/api/pricing listed them in 2025. Prices change and other
//! providers differ: the figure is an estimate, and a model not in the table has no
//! cost (the summary says how many answers were not priced). Cached-input and Batch
//! discounts are not applied.

/// (model prefix, input $/1M tokens, output $/1M tokens). Longer prefixes are tried
/// first, so `gpt-4o-mini-2024-07-18` is priced as `gpt-4o-mini`, not `gpt-4o`.
const PRICES: &[(&str, f64, f64)] = &[
    ("gpt-5-nano", 0.05, 0.40),
    ("gpt-5-mini", 0.25, 2.00),
    ("gpt-5", 1.25, 10.00),
    ("gpt-4.1-nano", 0.10, 0.40),
    ("gpt-4.1-mini", 0.40, 1.60),
    ("gpt-4.1", 2.00, 8.00),
    ("gpt-4o-mini", 0.15, 0.60),
    ("gpt-4o", 2.50, 10.00),
    ("gpt-4-turbo", 10.00, 30.00),
    ("gpt-3.5-turbo", 0.50, 1.50),
    ("o4-mini", 1.10, 4.40),
    ("o3-mini", 1.10, 4.40),
    ("o3", 2.00, 8.00),
    ("o1-mini", 1.10, 4.40),
    ("o1", 15.00, 60.00),
    ("text-embedding-3-small", 0.02, 0.0),
    ("text-embedding-3-large", 0.13, 0.0),
    ("text-embedding-ada-002", 0.10, 0.0),
];

/// The price of `model` per million tokens (input, output), if known.
pub fn price_of(model: &str) -> Option<(f64, f64)> {
    let m = model.strip_prefix("ft:").unwrap_or(model);
    PRICES
        .iter()
        .filter(|(p, _, _)| m.starts_with(p))
        .max_by_key(|(p, _, _)| p.len())
        .map(|&(_, i, o)| (i, o))
}

/// The cost in dollars of `input` and `output` tokens of `model`, if priced.
pub fn cost_of(model: &str, input: u64, output: u64) -> Option<f64> {
    price_of(model).map(|(i, o)| (input as f64 * i + output as f64 * o) / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_prefix_prices_a_model() {
        assert_eq!(price_of("gpt-4o-mini-2024-07-18"), Some((0.15, 0.60)));
        assert_eq!(price_of("gpt-4o-2024-08-06"), Some((2.50, 10.00)));
        assert_eq!(price_of("ft:gpt-4.1-mini:org::id"), Some((0.40, 1.60)));
        assert_eq!(price_of("llama3"), None);
        let c = cost_of("gpt-4o-mini", 1_000_000, 500_000).unwrap();
        assert!((c - 0.45).abs() < 1e-9);
    }
}
