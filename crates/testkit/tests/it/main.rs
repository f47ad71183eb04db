//! Engine, registry and conformance tests, driven by the test source and the memory sink.

mod engine;
mod registry;
