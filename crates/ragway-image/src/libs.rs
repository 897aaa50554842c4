//! `shared_libraries`: what a dynamically linked binary needs on a `scratch` base, from `ldd`.
//!
//! Only libraries the binary links are found; libraries it opens at run time with `dlopen`
//! (and data files such as CA certificates or time zones) must be added by the caller.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{ImageError, Result};
use crate::image::ImageFile;

/// Mode of the dynamic loader in the image (it is run as a program).
const LOADER_MODE: u32 = 0o755;
/// Mode of shared libraries in the image.
const LIBRARY_MODE: u32 = 0o644;

/// Files the binary needs at run time on a `scratch` base: its shared libraries and the
/// dynamic loader, from `ldd` (symlinks resolved; the image gets the file at the path ldd
/// printed, e.g. /lib/x86_64-linux-gnu/libblas.so.3 even when that is an alternatives
/// symlink). Sorted by target; empty for a statically linked binary.
pub fn shared_libraries(binary: &Path) -> Result<Vec<ImageFile>> {
    std::fs::metadata(binary).map_err(|source| ImageError::SourceMissing {
        path: binary.to_owned(),
        target: "(binary inspected by ldd)".to_owned(),
        source,
    })?;
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| ImageError::Ldd {
            binary: binary.to_owned(),
            message: format!("cannot run ldd: {e}"),
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if is_static(&stdout) || is_static(&stderr) {
        return Ok(Vec::new());
    }
    if !output.status.success() {
        let message = format!("ldd exited with {}: {}", output.status, stderr.trim());
        return Err(ImageError::Ldd {
            binary: binary.to_owned(),
            message,
        });
    }
    let mut files = BTreeMap::new();
    for line in stdout.lines() {
        match parse_line(line) {
            Line::Library(path) => {
                files.insert(path.clone(), LIBRARY_MODE);
            }
            Line::Loader(path) => {
                files.insert(path.clone(), LOADER_MODE);
            }
            Line::NotFound(library) => {
                return Err(ImageError::LibraryNotFound {
                    binary: binary.to_owned(),
                    library,
                });
            }
            Line::Other => {}
        }
    }
    if !files.values().any(|mode| *mode == LOADER_MODE) {
        let message = format!("ldd printed no dynamic loader:\n{stdout}");
        return Err(ImageError::Ldd {
            binary: binary.to_owned(),
            message,
        });
    }
    Ok(files
        .into_iter()
        .map(|(path, mode)| ImageFile {
            target: path.display().to_string(),
            source: path,
            mode,
        })
        .collect())
}

fn is_static(text: &str) -> bool {
    text.contains("statically linked") || text.contains("not a dynamic executable")
}

#[derive(Debug, PartialEq)]
enum Line {
    /// `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)`
    Library(PathBuf),
    /// `/lib64/ld-linux-x86-64.so.2 (0x...)`
    Loader(PathBuf),
    /// `libfoo.so.1 => not found`
    NotFound(String),
    /// `linux-vdso.so.1 (0x...)` (in the kernel, not a file) and anything else.
    Other,
}

fn parse_line(line: &str) -> Line {
    let line = line.trim();
    if let Some((name, rest)) = line.split_once(" => ") {
        let rest = rest.trim();
        if rest.starts_with("not found") {
            return Line::NotFound(name.trim().to_owned());
        }
        return match rest.split_whitespace().next() {
            Some(path) if path.starts_with('/') => Line::Library(PathBuf::from(path)),
            _ => Line::Other,
        };
    }
    match line.split_whitespace().next() {
        Some(path) if path.starts_with('/') => Line::Loader(PathBuf::from(path)),
        _ => Line::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ldd_lines() {
        assert_eq!(
            parse_line("\tlinux-vdso.so.1 (0x00007ffd1c5f2000)"),
            Line::Other
        );
        assert_eq!(
            parse_line("\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0e6a000000)"),
            Line::Library(PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"))
        );
        assert_eq!(
            parse_line("\t/lib64/ld-linux-x86-64.so.2 (0x00007f0e6a3c2000)"),
            Line::Loader(PathBuf::from("/lib64/ld-linux-x86-64.so.2"))
        );
        assert_eq!(
            parse_line("\tlibmissing.so.1 => not found"),
            Line::NotFound("libmissing.so.1".into())
        );
    }
}
