#![allow(unreachable_pub, missing_docs)]
//! Integration tests of the parquet sink: every scenario runs against a local directory and
//! against a real S3-compatible server (moto, started by the tests).

mod appends;
mod common;
mod duckdb;
mod failing;
mod moto;
mod scenarios;
