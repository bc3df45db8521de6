//! Records the target triple, so that `uplink --version` says what it was built for.
fn main() {
    println!(
        "cargo:rustc-env=UPLINK_TARGET={}",
        std::env::var("TARGET").unwrap_or_else(|_| "unknown".into())
    );
}
