//! Build script. For a Windows target it configures the WDK build (wdk-build) and links
//! netio.lib, which exports WskRegister, WskCaptureProviderNPI, WskReleaseProviderNPI and
//! WskDeregister (WSK-FACTS §1). For any other target the driver is built against the host kernel
//! and this script does nothing.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let target_is_windows = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "windows");
    if target_is_windows {
        windows_build();
    }
}

/// wdk-build is a build-dependency only where the build host is Windows (the WDK lives there).
#[cfg(windows)]
fn windows_build() {
    // Written against wdk-build 0.6; not built on Windows by the authors yet (see README).
    if let Err(error) = wdk_build::configure_wdk_binary_build() {
        panic!("wdk-build could not configure the driver build: {error:?}");
    }
    println!("cargo::rustc-link-lib=netio");
}

#[cfg(not(windows))]
fn windows_build() {
    panic!(
        "the wskaccept driver for Windows is built on Windows with the WDK (see README, On Windows)"
    );
}
