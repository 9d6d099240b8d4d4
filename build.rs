//! Build script. On a Windows target it configures the WDK link (wdk-build) and links netio.lib,
//! which exports WskRegister, WskCaptureProviderNPI, WskReleaseProviderNPI and WskDeregister
//! (WSK-FACTS §1). On any other target the driver is built against the host kernel and this
//! script does nothing.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    #[cfg(windows)]
    windows_build();
}

#[cfg(windows)]
fn windows_build() {
    // Written against wdk-build 0.6; not built on Windows by the authors yet (see README).
    if let Err(error) = wdk_build::configure_wdk_binary_build() {
        panic!("wdk-build could not configure the driver build: {error:?}");
    }
    println!("cargo::rustc-link-lib=netio");
}
