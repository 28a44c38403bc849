// Links alux user binaries (programs, drivers, services): static, no C
// runtime, at the default base address of a static non-PIE executable.
// Each user package's `build.rs` includes this file, so the link line is
// written once.
fn main() {
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-no-pie",
        "-Wl,--build-id=none",
        "-Wl,--strip-all",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
