//! Test guest: a valid component (a WASI command exporting `wasi:cli/run`) that does not export
//! `wedge:edge/module`, so the host must refuse it with a reason.

fn main() {
    println!("a plain WASI command, not a wedge module");
}
