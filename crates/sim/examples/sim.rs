//! Runs seeds without building the whole `mantle` binary:
//! `cargo run -p mantle-sim --example sim -- <first seed> <count> [steps]`.

#![allow(clippy::print_stdout)]

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let first = args.first().copied().unwrap_or(0);
    let count = args.get(1).copied().unwrap_or(1);
    let mut o = mantle_sim::Options::default();
    if let Some(s) = args.get(2) {
        o.steps = *s;
    }
    if let Some(t) = args.get(3) {
        o.tail = *t as usize;
    }
    let start = std::time::Instant::now();
    let mut failed = 0;
    for seed in first..first + count {
        match mantle_sim::run(seed, &o) {
            Ok(s) => {
                if count == 1 {
                    println!("{s:?}");
                }
            }
            Err(f) => {
                failed += 1;
                println!("{f}");
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{count} seeds, {failed} failed, {secs:.1} s ({:.0} seeds/minute)",
        count as f64 * 60.0 / secs
    );
}
