//! Debian's packages the builds and tests need, installed with apt-get
//! when missing (as root, or through sudo).

use std::process::Command;

use crate::{Result, run};

/// Install `packages`, saying `why` first.
pub fn install(packages: &[&str], why: &str) -> Result {
    eprintln!("xtask: installing {} {why}", packages.join(" "));
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n");
    let apt_get = || {
        let mut command = Command::new(if root { "apt-get" } else { "sudo" });
        if !root {
            command.arg("apt-get");
        }
        command
    };
    run(apt_get().args(["update", "-qq"]))?;
    run(apt_get()
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}
