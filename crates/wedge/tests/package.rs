//! The Debian package, installed for real: `dpkg -i` into a scratch root (`--root`), then the
//! files it put there checked: the binary runs, the unit passes `systemd-analyze verify` where
//! it was installed, and /etc/wedge/wedge.toml is a conffile that `wedge check` accepts.
//!
//! Needs a package: `cargo xtask test` (and so CI) makes one from the binary the suite built
//! (`cargo xtask deb` makes the release one) and runs the suite with `WEDGE_DEB` naming it;
//! a plain `cargo test` has none and says so.

mod support;

use std::path::Path;
use std::process::{Command, Output};

fn dpkg(root: &Path, args: &[&str]) -> Output {
    Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_package_installs_binary_unit_and_conffile() {
    let Ok(deb) = std::env::var("WEDGE_DEB") else {
        eprintln!("no package in WEDGE_DEB (`cargo xtask test` makes one): skipped");
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    // An empty dpkg database: this root has nothing installed.
    std::fs::create_dir_all(root.join("var/lib/dpkg/info")).unwrap();
    std::fs::create_dir_all(root.join("var/lib/dpkg/updates")).unwrap();
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();

    // libc6 is not "installed" in the scratch root: the one dependency is waived, nothing else.
    let out = dpkg(root, &["--force-depends", "--force-not-root", "-i", &deb]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dpkg -i: {stderr}");

    // What dpkg now knows: installed, with the configuration as a conffile (kept on upgrade).
    let status = dpkg(root, &["-s", "wedge"]);
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.contains("Status: install ok installed"), "{status}");
    assert!(
        status.contains("Conffiles:\n /etc/wedge/wedge.toml "),
        "{status}"
    );

    // The files, where the unit expects them.
    let listed = dpkg(root, &["-L", "wedge"]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    for file in [
        "/usr/bin/wedge",
        "/lib/systemd/system/wedge.service",
        "/etc/wedge/wedge.toml",
    ] {
        assert!(
            listed.lines().any(|l| l == file),
            "{file} not in:\n{listed}"
        );
        assert!(root.join(&file[1..]).is_file(), "{file} not installed");
    }
    let wedge = root.join("usr/bin/wedge");
    let version = Command::new(&wedge).arg("--version").output().unwrap();
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("wedge {}", env!("CARGO_PKG_VERSION"))
    );
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/wedge.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/wedge run /etc/wedge/wedge.toml"));

    // The installed configuration is a deployment wedge accepts as it is.
    let data = tempfile::tempdir().unwrap();
    let check = Command::new(&wedge)
        .arg("--data-dir")
        .arg(data.path())
        .arg("check")
        .arg(root.join("etc/wedge/wedge.toml"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "wedge check of the installed wedge.toml:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // The unit as installed, verified by systemd against this root.
    if let Some(analyze) = support::systemd::which("systemd-analyze") {
        support::systemd::prepare_root(root);
        let installed = root.join("lib/systemd/system/wedge.service");
        let out = Command::new(analyze)
            .arg("verify")
            .arg(format!("--root={}", root.display()))
            .arg(&installed)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "systemd-analyze verify:\n{stderr}");
        assert!(!stderr.contains("wedge.service"), "{stderr}");
    }

    // Removal takes the binary and the unit, and keeps the configuration (a conffile).
    let out = dpkg(root, &["--force-not-root", "-r", "wedge"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!wedge.exists());
    assert!(root.join("etc/wedge/wedge.toml").is_file());
}
