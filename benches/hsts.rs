//! placeholder: criterion benchmarks for the HSTS hot paths (being written).
fn main() {}
