//! End-to-end tests of the `sluice` binary against the in-process Lever emulator: exit codes,
//! config errors, the full run/state/resync cycle, secrets in logs, and SIGKILL recovery.

mod harness;

mod cli;
mod cloud;
mod kill;
mod oauth;
mod resync;
mod serve;
