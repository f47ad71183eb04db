//! Parses and decodes the pages of an emulated account once, for instruction-count profiling
//! (`valgrind --tool=callgrind`), which, unlike timings, repeats exactly on a shared machine:
//!
//! ```sh
//! cargo build --release -p sluice-source-lever --example decode_once
//! valgrind --tool=callgrind --toggle-collect='*decode_all*' \
//!     target/release/examples/decode_once 300
//! ```
//!
//! The argument is the number of opportunities (default 300). With `PARSE_ONLY=1` set, it
//! first times three rounds of parsing alone (no decoding). `--toggle-collect` counts only
//! the parsing and decoding, not the building of the input. The allocator is the binaries'
//! (mimalloc), so allocation costs what it costs in a sync.

use sluice_source_lever::__bench::DecodeInput;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let n = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(300);
    let input = DecodeInput::from_emulator(n);
    if std::env::var("PARSE_ONLY").is_ok() {
        for _ in 0..3 {
            let t = std::time::Instant::now();
            let c = input.parse_all();
            let secs = t.elapsed().as_secs_f64();
            println!(
                "parsed {c} bodies in {secs:.3} s ({:.0} MB/s)",
                input.bytes() as f64 / secs / 1e6
            );
        }
    }
    let started = std::time::Instant::now();
    let rows = input.decode_all();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{n} opportunities, {} bytes of JSON, {rows} rows, decoded in {secs:.3} s ({:.0} MB/s)",
        input.bytes(),
        input.bytes() as f64 / secs / 1e6
    );
}
