//! The set-up scripts' detection of libclang, which decides whether `libclang-dev` gets installed before RocksDB's
//! bindings are generated.
//!
//! Defect pinned here: `have_libclang` accepted LLVM's `libclang-cpp.so.14` (clang's C++ library, shipped alone by
//! many images) as libclang, so `libclang-dev` was never installed and the first build failed in librocksdb-sys's
//! build script with "Unable to find libclang". The detection must follow what bindgen (through clang-sys) loads.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace_root() -> PathBuf {
    manifest_dir()
        .parent()
        .expect("the tests crate lives in the workspace")
        .to_path_buf()
}

/// Runs `snippet` after sourcing scripts/env.sh, with the libclang search moved under `root`.
fn run_env(snippet: &str, root: &Path, extra: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(format!("source scripts/env.sh; {snippet}"))
        .current_dir(workspace_root())
        .env("LIBCLANG_SEARCH_ROOT", root)
        .env_remove("LIBCLANG_PATH")
        .env_remove("LLVM_CONFIG_PATH");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.output().expect("bash runs")
}

fn python_available() -> bool {
    Command::new("python3")
        .arg("-c")
        .arg("import ctypes")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A file under `root` at `rel`; a copy of `from` when it exists (a real library), otherwise empty.
fn place(root: &Path, rel: &str, from: Option<&Path>) -> PathBuf {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    match from {
        Some(src) if src.exists() => {
            std::fs::copy(src, &path).unwrap();
        }
        _ => {
            std::fs::write(&path, b"").unwrap();
        }
    }
    path
}

/// The libclang the scripts find on this machine, searching from `/` as bindgen does.
fn real_libclang() -> Option<PathBuf> {
    let out = Command::new("bash")
        .arg("-c")
        .arg("source scripts/env.sh; find_libclang")
        .current_dir(workspace_root())
        .env_remove("LIBCLANG_SEARCH_ROOT")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

#[test]
fn libclang_cpp_alone_is_not_libclang() {
    let root = tempfile::tempdir().unwrap();
    let cpp = Path::new("/lib/x86_64-linux-gnu/libclang-cpp.so.14");
    place(
        root.path(),
        "usr/lib/x86_64-linux-gnu/libclang-cpp.so.14",
        Some(cpp),
    );
    place(
        root.path(),
        "usr/lib/llvm-14/lib/libclang-cpp.so.14",
        Some(cpp),
    );

    let found = run_env("find_libclang", root.path(), &[]);
    assert!(
        !found.status.success(),
        "a directory holding only libclang-cpp.so.14 was taken for libclang: {}",
        String::from_utf8_lossy(&found.stdout)
    );

    // And so the prerequisites step asks for libclang-dev.
    let missing = run_env(
        "ensure_build_prereqs",
        root.path(),
        &[("STREAMS_PREREQS_DRY_RUN", "1")],
    );
    assert!(missing.status.success());
    let said = String::from_utf8_lossy(&missing.stdout);
    assert!(
        said.contains("libclang-dev"),
        "libclang-dev is not listed as missing: {said:?}"
    );
}

#[test]
fn libclang_path_holding_only_libclang_cpp_is_not_libclang() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("llvm/lib");
    place(
        root.path(),
        "llvm/lib/libclang-cpp.so.14",
        Some(Path::new("/lib/x86_64-linux-gnu/libclang-cpp.so.14")),
    );
    let found = run_env(
        "find_libclang",
        root.path(),
        &[("LIBCLANG_PATH", dir.to_str().unwrap())],
    );
    assert!(!found.status.success());
}

#[test]
fn a_file_named_like_libclang_that_does_not_load_is_not_libclang() {
    if !python_available() {
        eprintln!("SKIP: python3 with ctypes is needed to check that a candidate loads");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    place(root.path(), "usr/lib/llvm-14/lib/libclang.so.1", None);
    let found = run_env("find_libclang", root.path(), &[]);
    assert!(
        !found.status.success(),
        "an empty file named libclang.so.1 was taken for libclang"
    );
}

#[test]
fn a_real_libclang_is_found_under_the_names_clang_sys_accepts() {
    let Some(real) = real_libclang() else {
        // The build of this test needed libclang, so this only happens when it was removed since.
        eprintln!("SKIP: no libclang on this machine");
        return;
    };
    for name in [
        "libclang.so",
        "libclang-14.so",
        "libclang.so.1",
        "libclang-14.so.1",
    ] {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("usr/lib/llvm-14/lib");
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(&real, dir.join(name)).unwrap();
        place(
            root.path(),
            "usr/lib/llvm-14/lib/libclang-cpp.so.14",
            Some(Path::new("/lib/x86_64-linux-gnu/libclang-cpp.so.14")),
        );
        let found = run_env("find_libclang", root.path(), &[]);
        assert!(found.status.success(), "{name} was not found");
        assert_eq!(
            String::from_utf8_lossy(&found.stdout).trim(),
            dir.join(name).to_str().unwrap()
        );
        let missing = run_env(
            "ensure_build_prereqs",
            root.path(),
            &[("STREAMS_PREREQS_DRY_RUN", "1")],
        );
        assert!(
            !String::from_utf8_lossy(&missing.stdout).contains("libclang-dev"),
            "libclang-dev asked for although {name} is there"
        );
    }
}

/// The package's directory, as cargo gives it when it runs the binary: a build cache shared between checkouts
/// can hand out a binary compiled in another checkout, whose compile-time path would point there.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
