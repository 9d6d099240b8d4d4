//! Build script. For a Windows target it configures the WDK build with wdk-build (include and
//! library paths, the KMDF configuration from `[package.metadata.wdk]`, linker arguments) and links
//! netio.lib, which exports WskRegister, WskCaptureProviderNPI, WskReleaseProviderNPI and
//! WskDeregister (WSK-FACTS §1). For any other target the driver is built against the host kernel
//! and this script does nothing.
//!
//! wdk-build is a build dependency of a Windows host only, because wdk-build 0.6 does not build on
//! other hosts. The Windows lane (`scripts/windows-lane/run.sh`) cross-builds from Linux with the
//! `cross-wdk` feature, which adds the same wdk-build as a build dependency on any host, patched
//! in the lane's throw-away overlay so that it builds there.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let target_is_windows = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "windows");
    if target_is_windows {
        windows_build();
    }
}

#[cfg(any(windows, feature = "cross-wdk"))]
fn windows_build() {
    if let Err(error) = wdk_build::configure_wdk_binary_build() {
        fail(&format!(
            "wdk-build could not configure the driver build: {error}\n\
             Is the WDK installed (or WDKContentRoot set)? See README, On Windows."
        ));
    }
    println!("cargo::rustc-link-lib=netio");
}

#[cfg(not(any(windows, feature = "cross-wdk")))]
fn windows_build() {
    fail(
        "building the wskaccept driver for Windows needs wdk-build, which is a build dependency \
         of a Windows host only. On Windows, build with the WDK (README, On Windows); from \
         another host use scripts/windows-lane/run.sh, which enables the `cross-wdk` feature \
         with a patched wdk-build and a substitute WDK.",
    );
}

/// Stops the build with a message and no panic backtrace.
fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}
