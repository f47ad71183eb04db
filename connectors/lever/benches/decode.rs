#![allow(missing_docs)]
//! Parse + decode throughput of the Lever source (no HTTP): emulator pages → Arrow batches of
//! the 46 tables. `cargo bench -p sluice-source-lever --bench decode`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_source_lever::__bench::DecodeInput;

fn decode(c: &mut Criterion) {
    let input = DecodeInput::from_emulator(1_000);
    let rows = input.decode_all();
    println!(
        "decode input: 1000 opportunities, {} bytes of JSON, {rows} rows",
        input.bytes()
    );
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(rows as u64));
    g.sample_size(10);
    g.bench_function("1000_opportunities_all_tables", |b| {
        b.iter(|| input.decode_all())
    });
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
