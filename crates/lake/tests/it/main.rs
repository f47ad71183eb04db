#![allow(unreachable_pub, missing_docs)]
//! Integration tests of the lake engine through its two format sinks (`parquet` and `delta`):
//! every scenario runs against a local directory and against a real S3-compatible server
//! (moto, started by the tests).

/// Runs each named scenario `async fn name(lake: Lake)` once on a local directory
/// (`local::name`) and once on moto S3 (`s3::name`).
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::common::Lake::local()).await
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(lake) = crate::common::Lake::s3() {
                        super::$name(lake).await
                    }
                }
            )*
        }
    };
}

mod appends;
mod common;
mod delta;
mod delta_readers;
mod duckdb;
mod durability;
mod failing;
mod hooks;
mod iceberg;
mod iceberg_postgres;
mod lease_safety;
mod moto;
mod pg_server;
mod reader_steps;
mod scenarios;
