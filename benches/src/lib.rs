//! Benchmark harnesses shared code.
