//! Python guests: componentize-py, installed with Twisted by the first
//! build into target/componentize-venv, turns each Twisted program of
//! tests/reference, guests/python and tests/guests/python into a
//! component (`tests/reference/echo.py` -> `echo_py.wasm`) through the
//! SDK's own build command (`guest-sdk/python/weft/_build.py`, which a
//! pip-installed SDK runs as `weft-python`): it runs the program with
//! weft's reactor, picks its world and leaves no bytecode behind. (The
//! host fixes the write leak of componentize-py's runtime when it loads
//! the component.)

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::sources::stale;
use crate::{Result, run, target_dir, workspace_root};

/// The Python guests, each a Twisted program: its folder, its name and the
/// command line it runs with at build time. The seed programs are
/// tests/reference's, built unmodified (`chat_idle` with a 1 s timeout,
/// for its test).
const GUESTS: [(&str, &str, &[&str]); 12] = [
    ("tests/reference", "echo", &["1234"]),
    ("tests/reference", "udp_echo", &["9999"]),
    ("tests/reference", "counter", &["8080"]),
    ("tests/reference", "chat", &["1025"]),
    ("tests/reference", "chat_idle", &["1025", "1.0"]),
    ("guests/python", "portforward", &[]),
    ("guests/python", "redis_counter", &[]),
    ("guests/python", "kv_counter", &[]),
    ("guests/python", "chat_room", &[]),
    ("tests/guests/python", "faulty", &[]),
    ("tests/guests/python", "reactor", &[]),
    ("tests/guests/python", "features", &[]),
];

/// The Twisted release weft's reactor is written against, bundled into
/// every Python guest.
const TWISTED: &str = "twisted==26.10.0";

const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// Build the Python guests whose sources changed since they were built.
pub fn build() -> Result {
    let root = workspace_root();
    let (wit, sdk) = (root.join("wit"), root.join("guest-sdk").join("python"));
    let out_dir = target_dir().join("wasm32-wasip2").join("release");
    let to_build: Vec<(PathBuf, &str, &[&str])> = GUESTS
        .into_iter()
        .map(|(dir, module, args)| (root.join(dir), module, args))
        .filter(|(dir, module, _)| {
            stale(
                &component(&out_dir, module),
                // The SDK's sources, not its folder: `pip install` (the
                // `weft new` test) leaves a build folder there.
                [
                    &wit,
                    &sdk.join("weft"),
                    &sdk.join("protocol.py"),
                    &dir.join(format!("{module}.py")),
                ],
            )
        })
        .collect();
    if to_build.is_empty() {
        return Ok(());
    }
    let componentize_py = componentize_py()?;
    for (dir, module, args) in to_build {
        let source = dir.join(format!("{module}.py"));
        componentize(
            &componentize_py,
            &source,
            &component(&out_dir, module),
            args,
        )?;
    }
    Ok(())
}

/// `cargo xtask python PROGRAM.py [OUT.wasm] [-- ARG...]`: build a Twisted
/// program of the user's own, as the bundled ones are, into OUT.wasm (by
/// default PROGRAM.wasm beside it), running it with ARG... as its command
/// line.
pub fn build_module(args: &[String]) -> Result {
    let (ours, program_args) = match args.iter().position(|arg| arg == "--") {
        Some(dash) => (&args[..dash], &args[dash + 1..]),
        None => (args, &[][..]),
    };
    let (source, out) = crate::sources::source_and_output(
        ours,
        "py",
        "cargo xtask python PROGRAM.py [OUT.wasm] [-- ARG...]",
    )?;
    let program_args: Vec<&str> = program_args.iter().map(String::as_str).collect();
    componentize(&componentize_py()?, &source, &out, &program_args)?;
    Ok(())
}

/// Build `source` into `out` with the SDK's build command, run by the
/// componentize venv's Python, against this checkout's WIT; `args` is the
/// program's command line while it runs at build time.
fn componentize(componentize_py: &Path, source: &Path, out: &Path, args: &[&str]) -> Result {
    let root = workspace_root();
    let build = root
        .join("guest-sdk")
        .join("python")
        .join("weft")
        .join("_build.py");
    run(Command::new(componentize_py.with_file_name("python"))
        .arg(build)
        .arg("--wit")
        .arg(root.join("wit"))
        .arg("--bindings")
        .arg(bindings(componentize_py)?)
        .arg(source)
        .arg(out)
        .arg("--")
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1"))
    .map_err(|_| format!("{} was not built", source.display()))
}

/// The Python bindings of the current WIT, which the SDK imports, made
/// into target/python-bindings when the WIT is newer.
fn bindings(componentize_py: &Path) -> Result<PathBuf> {
    let wit = workspace_root().join("wit");
    let dir = target_dir().join("python-bindings");
    let made = dir.join("wit_world").join("__init__.py");
    if stale(&made, [&wit]) {
        let _ = std::fs::remove_dir_all(&dir);
        run(Command::new(componentize_py)
            .arg("-d")
            .arg(&wit)
            .args(["-w", "stateful-service", "bindings"])
            .arg(&dir))?;
    }
    Ok(dir)
}

fn component(out_dir: &Path, guest: &str) -> PathBuf {
    out_dir.join(format!("{guest}_py.wasm"))
}

/// componentize-py, installed once into target/componentize-venv.
fn componentize_py() -> Result<PathBuf> {
    let venv = target_dir().join("componentize-venv");
    let tool = venv.join("bin").join("componentize-py");
    let has_twisted = venv
        .join("lib")
        .read_dir()
        .into_iter()
        .flatten()
        .flatten()
        .any(|python| python.path().join("site-packages").join("twisted").exists());
    if !tool.exists() || !has_twisted {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        run(Command::new(venv.join("bin").join("python")).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            COMPONENTIZE_PY,
            TWISTED,
        ]))?;
    }
    Ok(tool)
}
