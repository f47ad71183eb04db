//! `sluice serve` end to end: a real HTTP client against a server on 127.0.0.1:0, syncing
//! from the Lever emulator into a Parquet lake.

mod browser;
mod errors;
mod harness;
mod lifecycle;
mod oauth;
mod scheduler;
