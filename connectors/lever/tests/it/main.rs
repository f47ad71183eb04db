//! Integration tests of the Lever source against the in-process emulator (127.0.0.1 only).

mod bad_input;
mod common;
mod full;
mod incremental;
mod measure;
mod network;
mod priority;
mod rescan;
mod resilience;
mod resync;
mod security;
mod shape;
mod untrusted;
mod walk;
