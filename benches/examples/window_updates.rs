//! The window-update kernel of `benches/kernels.rs` as a plain program, for
//! instruction counts, which repeat exactly where timings do not:
//! `valgrind --tool=callgrind target/release/examples/window_updates 2`,
//! minus the same with `1`, is the cost of one run of 100,000 observations.

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    let kernel = vagt_benches::WindowKernel::new();
    let keys: usize = (0..rounds).map(|_| kernel.run()).sum();
    println!("{keys} keys");
}
