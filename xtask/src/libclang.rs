//! Is there a libclang that `librocksdb-sys`' bindgen can load?
//!
//! bindgen (through clang-sys, `runtime` feature) loads libclang with `dlopen` at build time. It
//! looks for exactly these file names: `libclang.so`, `libclang-*.so`, `libclang.so.*` and
//! `libclang-*.so.*`, never a name containing `-cpp.` (`libclang-cpp.so.14` is the C++ library,
//! another thing), in `LIBCLANG_PATH` alone when it is set (a directory or the file itself), else in
//! `LD_LIBRARY_PATH`, `LIBRARY_PATH` and the globs `/usr/local/lib*`, `/usr/lib*`, one and two levels
//! down. A library found there is only half of it: libclang parses C headers with its own builtin
//! headers (`stddef.h`, `stdarg.h`), which it finds in `clang/<version>/include` beside the real
//! file, and Debian ships those in another package (`libclang-common-*-dev`). So a libclang counts
//! only when both are there; `libclang-dev` brings both.

use std::path::{Path, PathBuf};

/// Where to look: the environment variables bindgen reads, and the root that the fixed directory
/// globs hang from (`/` on a real machine, a temporary directory in the tests).
pub struct Search {
    pub root: PathBuf,
    pub libclang_path: Option<PathBuf>,
    pub ld_library_path: Vec<PathBuf>,
    pub library_path: Vec<PathBuf>,
}

impl Search {
    /// The search bindgen will make on this machine.
    pub fn from_env() -> Search {
        let paths = |name: &str| -> Vec<PathBuf> {
            std::env::var_os(name)
                .map(|v| std::env::split_paths(&v).collect())
                .unwrap_or_default()
        };
        Search {
            root: PathBuf::from("/"),
            libclang_path: std::env::var_os("LIBCLANG_PATH").map(PathBuf::from),
            ld_library_path: paths("LD_LIBRARY_PATH"),
            library_path: paths("LIBRARY_PATH"),
        }
    }
}

/// What was found.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// A loadable libclang with its builtin headers beside it.
    Usable(PathBuf),
    /// A loadable libclang, but no `clang/*/include/stddef.h` beside it: bindgen would load it and
    /// then fail on `#include <stddef.h>`.
    NoHeaders(PathBuf),
    /// Nothing bindgen would load.
    Missing,
}

/// The directory globs clang-sys searches on Linux, most specific first.
const DIRECTORY_GLOBS: &[&str] = &[
    "usr/local/llvm*/lib*",
    "usr/local/lib*/*/*",
    "usr/local/lib*/*",
    "usr/local/lib*",
    "usr/lib*/*/*",
    "usr/lib*/*",
    "usr/lib*",
];

pub fn find(search: &Search) -> Found {
    let candidates = candidates(search);
    for lib in &candidates {
        if has_builtin_headers(lib) {
            return Found::Usable(lib.clone());
        }
    }
    match candidates.into_iter().next() {
        Some(lib) => Found::NoHeaders(lib),
        None => Found::Missing,
    }
}

/// Every file bindgen would accept, in its search order.
fn candidates(search: &Search) -> Vec<PathBuf> {
    if let Some(path) = &search.libclang_path {
        if path.is_file()
            && path
                .file_name()
                .is_some_and(|n| is_libclang_name(&n.to_string_lossy()))
        {
            return vec![path.clone()]
                .into_iter()
                .filter(|p| is_elf64(p))
                .collect();
        }
        return libraries_in(path);
    }
    let mut found = Vec::new();
    for dir in search.ld_library_path.iter().chain(&search.library_path) {
        found.extend(libraries_in(dir));
    }
    for pattern in DIRECTORY_GLOBS {
        for dir in expand(&search.root, pattern) {
            found.extend(libraries_in(&dir));
        }
    }
    found
}

/// The file names clang-sys's runtime search accepts.
pub fn is_libclang_name(name: &str) -> bool {
    if name.contains("-cpp.") {
        return false;
    }
    name == "libclang.so"
        || (name.starts_with("libclang-")
            && name.ends_with(".so")
            && name.len() > "libclang-.so".len())
        || name
            .strip_prefix("libclang.so.")
            .is_some_and(|v| !v.is_empty())
        || name
            .strip_prefix("libclang-")
            .and_then(|rest| rest.split_once(".so."))
            .is_some_and(|(version, suffix)| !version.is_empty() && !suffix.is_empty())
}

fn libraries_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut libs: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| is_libclang_name(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .filter(|p| is_elf64(p))
        .collect();
    libs.sort();
    libs
}

/// clang-sys refuses a file whose ELF class is not the target's (64-bit here).
fn is_elf64(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 5];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head == [0x7f, b'E', b'L', b'F', 2]
}

/// libclang finds its builtin headers at `<dir of the real library>/clang/<version>/include`.
fn has_builtin_headers(lib: &Path) -> bool {
    let real = std::fs::canonicalize(lib).unwrap_or_else(|_| lib.to_path_buf());
    let Some(dir) = real.parent() else {
        return false;
    };
    std::fs::read_dir(dir.join("clang"))
        .map(|versions| {
            versions
                .flatten()
                .any(|v| v.path().join("include/stddef.h").is_file())
        })
        .unwrap_or(false)
}

/// Expands a relative pattern whose components may hold `*` (within one component) under `root`,
/// matching directories only, as clang-sys's glob does (case-insensitively).
fn expand(root: &Path, pattern: &str) -> Vec<PathBuf> {
    let mut dirs = vec![root.to_path_buf()];
    for component in pattern.split('/') {
        let mut next = Vec::new();
        for dir in &dirs {
            if !component.contains('*') {
                let p = dir.join(component);
                if p.is_dir() {
                    next.push(p);
                }
                continue;
            }
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut matched: Vec<PathBuf> = entries
                .flatten()
                .filter(|e| wildcard(component, &e.file_name().to_string_lossy().to_lowercase()))
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect();
            matched.sort();
            next.extend(matched);
        }
        dirs = next;
    }
    dirs
}

/// `*` matches any run of characters (no `/`, which a file name never holds).
fn wildcard(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pattern == name;
    }
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const ELF64: &[u8] = &[0x7f, b'E', b'L', b'F', 2, 1, 1, 0];

    struct Tree(PathBuf);

    impl Tree {
        fn new(name: &str) -> Tree {
            let dir =
                std::env::temp_dir().join(format!("xtask-libclang-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Tree(dir)
        }
        fn file(&self, rel: &str, bytes: &[u8]) -> PathBuf {
            let p = self.0.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, bytes).unwrap();
            p
        }
        fn link(&self, rel: &str, target: &str) {
            let p = self.0.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(target, p).unwrap();
        }
        fn search(&self) -> Search {
            Search {
                root: self.0.clone(),
                libclang_path: None,
                ld_library_path: Vec::new(),
                library_path: Vec::new(),
            }
        }
        /// Debian's libclang1-14 + libclang-common-14-dev, with its symlinks.
        fn debian_libclang(&self, headers: bool) {
            self.file("usr/lib/llvm-14/lib/libclang-14.so.14.0.6", ELF64);
            self.link(
                "usr/lib/llvm-14/lib/libclang-14.so.1",
                "libclang-14.so.14.0.6",
            );
            self.link(
                "usr/lib/x86_64-linux-gnu/libclang-14.so.1",
                "../llvm-14/lib/libclang-14.so.14.0.6",
            );
            if headers {
                self.file("usr/lib/llvm-14/lib/clang/14.0.6/include/stddef.h", b"");
            }
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn names_bindgen_loads() {
        for ok in [
            "libclang.so",
            "libclang-14.so",
            "libclang.so.1",
            "libclang-14.so.1",
            "libclang-14.0.6.so.14",
        ] {
            assert!(is_libclang_name(ok), "{ok}");
        }
        for no in [
            "libclang-cpp.so.14",
            "libclang-cpp.so",
            "libclang.a",
            "libclangBasic.a",
            "libclang-14.a",
            "libclang.so.",
        ] {
            assert!(!is_libclang_name(no), "{no}");
        }
    }

    #[test]
    fn present_with_headers_is_usable() {
        let t = Tree::new("present");
        t.debian_libclang(true);
        assert!(matches!(find(&t.search()), Found::Usable(_)));
    }

    #[test]
    fn absent_is_missing() {
        let t = Tree::new("absent");
        t.file("usr/lib/x86_64-linux-gnu/libc.so.6", ELF64);
        assert_eq!(find(&t.search()), Found::Missing);
    }

    #[test]
    fn only_libclang_cpp_is_missing() {
        let t = Tree::new("cpp");
        t.file("usr/lib/llvm-14/lib/libclang-cpp.so.14", ELF64);
        t.link(
            "usr/lib/x86_64-linux-gnu/libclang-cpp.so.14",
            "../llvm-14/lib/libclang-cpp.so.14",
        );
        t.file("usr/lib/llvm-14/lib/libclangBasic.a", b"!<arch>\n");
        assert_eq!(find(&t.search()), Found::Missing);
    }

    #[test]
    fn library_without_builtin_headers_is_not_enough() {
        let t = Tree::new("noheaders");
        t.debian_libclang(false);
        assert!(matches!(find(&t.search()), Found::NoHeaders(_)));
    }

    #[test]
    fn a_file_that_is_not_a_64_bit_library_is_skipped() {
        let t = Tree::new("notelf");
        t.file("usr/lib/libclang.so", b"INPUT(-lclang-14)\n");
        assert_eq!(find(&t.search()), Found::Missing);
    }

    #[test]
    fn libclang_path_is_the_only_place_searched_when_set() {
        let t = Tree::new("envpath");
        t.file("opt/llvm/lib/libclang.so", ELF64);
        t.file("opt/llvm/lib/clang/17/include/stddef.h", b"");
        let mut search = t.search();
        search.libclang_path = Some(t.0.join("opt/llvm/lib"));
        assert!(matches!(find(&search), Found::Usable(_)));
        // As a file too.
        search.libclang_path = Some(t.0.join("opt/llvm/lib/libclang.so"));
        assert!(matches!(find(&search), Found::Usable(_)));
        // Pointing at an empty directory, a library elsewhere does not count: bindgen would not look.
        t.debian_libclang(true);
        search.libclang_path = Some(t.0.join("opt"));
        assert_eq!(find(&search), Found::Missing);
    }

    #[test]
    fn ld_library_path_is_searched() {
        let t = Tree::new("ldpath");
        t.file("home/me/llvm/libclang-17.so", ELF64);
        t.file("home/me/llvm/clang/17/include/stddef.h", b"");
        let mut search = t.search();
        assert_eq!(find(&search), Found::Missing);
        search.ld_library_path = vec![t.0.join("home/me/llvm")];
        assert!(matches!(find(&search), Found::Usable(_)));
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("lib*", "lib64"));
        assert!(wildcard("llvm*", "llvm-14"));
        assert!(wildcard("*", "x86_64-linux-gnu"));
        assert!(!wildcard("llvm*", "gcc"));
        assert!(wildcard("a*b*c", "axxbyyc"));
        assert!(!wildcard("a*b*c", "axxc"));
    }
}
