//! Records the target triple, so that `uplink --version` says what it was built for,
//! and the build time, below which the running box knows its clock is wrong.
fn main() {
    println!(
        "cargo:rustc-env=UPLINK_TARGET={}",
        std::env::var("TARGET").unwrap_or_else(|_| "unknown".into())
    );
    // Reproducible builds set SOURCE_DATE_EPOCH; otherwise the time of this build.
    let built = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    println!("cargo:rustc-env=UPLINK_BUILT_UNIX={built}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
}
