//! Generates `FUNCTIONS` distinct functions and a table of them, all reachable from the
//! `eval` method, so that neither the compiler nor the linker can drop any: the component is
//! large the way an interpreter's is (many functions, much code), which is what Cranelift's
//! time and memory at a cold compile depend on.

use std::fmt::Write as _;

const FUNCTIONS: usize = 12_000;

fn main() {
    let mut code = String::new();
    for i in 0..FUNCTIONS {
        let (a, b, c) = (i * 7 + 3, i % 13 + 1, i % 29 + 2);
        writeln!(
            code,
            "#[inline(never)] fn f{i}(x: u64) -> u64 {{ let mut y = x ^ {a}; \
             for k in 0..(x % {c}) {{ y = y.rotate_left({b}).wrapping_mul({a} | 1) ^ k; \
             if y % {c} == {b} {{ y = y.wrapping_add({i}); }} }} \
             match y % 4 {{ 0 => y / {b}, 1 => y.wrapping_sub({a}), 2 => y << ({b} % 8), _ => y ^ {c} }} }}"
        )
        .unwrap();
    }
    code.push_str("pub static FUNCTIONS: &[fn(u64) -> u64] = &[");
    for i in 0..FUNCTIONS {
        write!(code, "f{i},").unwrap();
    }
    code.push_str("];\n");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    std::fs::write(out.join("generated.rs"), code).unwrap();
    println!("cargo:rerun-if-changed=build.rs");
}
