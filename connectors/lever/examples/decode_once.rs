//! Parses and decodes the pages of an emulated account once, for instruction-count profiling
//! (`valgrind --tool=callgrind`), which, unlike timings, repeats exactly on a shared machine:
//!
//! ```sh
//! cargo build --release -p sluice-source-lever --example decode_once
//! valgrind --tool=callgrind --toggle-collect='*decode_all*' \
//!     target/release/examples/decode_once 300
//! ```
//!
//! The argument is the number of opportunities (default 300). `--toggle-collect` counts only
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
    let rows = input.decode_all();
    println!(
        "{n} opportunities, {} bytes of JSON, {rows} rows",
        input.bytes()
    );
}
