//! Integration tests of the Lever emulator over HTTP (127.0.0.1:0).

mod auth;
mod common;
mod endpoints;
mod expected;
mod limits;
mod mutations;
