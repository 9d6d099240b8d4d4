//! The Windows delivery files agree with each other and with the code: package name, hardware id,
//! device interface GUID, service name, KMDF version, INX location. None of them can run here, so
//! this is what keeps them from drifting apart.

use std::path::Path;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn guid_text() -> String {
    let g = ioctl::DEVICE_INTERFACE_GUID;
    format!(
        "{{{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}}}",
        g.data1,
        g.data2,
        g.data3,
        g.data4[0],
        g.data4[1],
        g.data4[2],
        g.data4[3],
        g.data4[4],
        g.data4[5],
        g.data4[6],
        g.data4[7]
    )
}

#[test]
fn package_hardware_id_service_and_files_agree() {
    let cargo = read("Cargo.toml");
    let inx = read("inf/wskaccept.inx");
    let makefile = read("Makefile.toml");
    let workflow = read(".github/workflows/windows.yml");
    assert!(cargo.contains("name = \"wskaccept\""), "package name");
    assert!(
        inx.contains("wskaccept.sys = 1,,") && inx.contains("ServiceBinary = %13%\\wskaccept.sys"),
        "binary name"
    );
    assert!(inx.contains("CatalogFile = wskaccept.cat"));
    assert!(
        inx.contains("AddService = wskaccept,") && inx.contains("KmdfService = wskaccept,"),
        "service name"
    );
    assert!(
        inx.contains("KmdfLibraryVersion = $KMDFVERSION$"),
        "stampinf fills the KMDF version"
    );
    assert!(inx.contains("PnpLockdown = 1") && !inx.contains("Class       = Sample"));
    assert!(inx.contains(", Root\\WskAccept"), "hardware id");
    assert!(
        makefile.contains("inf/wskaccept.inx") && makefile.contains("wskaccept.inf"),
        "the INX copy step"
    );
    assert!(workflow.contains("wskaccept_package"));
    for script in [
        "Install-WskAccept.ps1",
        "Test-WskAccept.ps1",
        "Uninstall-WskAccept.ps1",
    ] {
        let text = read(&format!("scripts/vm/{script}"));
        assert!(
            text.contains("$HardwareId = 'Root\\WskAccept'"),
            "{script}: hardware id"
        );
    }
    let install = read("scripts/vm/Install-WskAccept.ps1");
    assert!(
        install.contains(&guid_text()),
        "Install waits for the interface GUID of crates/ioctl ({})",
        guid_text()
    );
    assert!(read("scripts/vm/Uninstall-WskAccept.ps1").contains("wskaccept\\.inf"));
    assert!(read("scripts/vm/Prepare-TestMachine.ps1").contains("/driver wskaccept.sys"));
}

#[test]
fn kmdf_version_and_sddl_agree() {
    let cargo = read("Cargo.toml");
    assert!(
        cargo.contains("driver-type = \"KMDF\"")
            && cargo.contains("kmdf-version-major = 1")
            && cargo.contains("target-kmdf-version-minor = 33")
    );
    let sddl = "D:P(A;;GA;;;SY)(A;;GA;;;BA)";
    assert!(
        read("inf/wskaccept.inx").contains(sddl),
        "INF device security"
    );
    assert!(
        read("driver/entry/mod.rs").contains(sddl),
        "WdfDeviceInitAssignSDDLString"
    );
}

/// A workflow that sets RUSTFLAGS replaces `.cargo/config.toml`'s target rustflags, and wdk-build
/// refuses a driver built without `+crt-static` (StaticCrtNotEnabled): every RUSTFLAGS the
/// workflow sets must carry it.
#[test]
fn workflow_rustflags_keep_the_static_crt() {
    let workflow = read(".github/workflows/windows.yml");
    let settings: Vec<&str> = workflow
        .lines()
        .filter(|line| line.trim_start().starts_with("RUSTFLAGS:"))
        .collect();
    for line in &settings {
        assert!(line.contains("target-feature=+crt-static"), "{line}");
        assert!(line.contains("panic=abort"), "{line}");
    }
    let config = read(".cargo/config.toml");
    assert!(config.contains("target-feature=+crt-static"));
    // A panic in the driver is a bug check: Windows builds abort whatever the profile.
    assert!(config.contains(r#""-C", "panic=abort""#));
}

/// Both wskaccept and the kernel facade allocate with ExAllocatePool2, which exists from
/// Windows 10 version 2004 (build 19041): the INF must not offer the driver to older builds.
#[test]
fn inf_floor_is_the_first_build_with_exallocatepool2() {
    let inx = read("inf/wskaccept.inx");
    assert!(read("driver/kernel/windows.rs").contains("ExAllocatePool2"));
    let floors: Vec<&str> = inx
        .lines()
        .filter_map(|line| line.split("NT$ARCH$.").nth(1))
        .collect();
    assert!(!floors.is_empty(), "no decorated models section");
    for floor in floors {
        let build: u32 = floor
            .trim_start_matches("10.0...")
            .trim_end_matches(']')
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("unreadable floor {floor}"));
        assert!(build >= 19041, "INF floor {build} predates ExAllocatePool2");
    }
}

/// The Windows backend reads the IRQL from CR8 (x86_64 only): nothing may claim another target.
#[test]
fn no_windows_target_but_x86_64_is_configured() {
    let config = read(".cargo/config.toml");
    assert!(!config.contains("aarch64"), "ARM64 is not supported");
}
