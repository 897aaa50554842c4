//! One layer on disk: a reproducible tar (entries sorted, parent folders included, owned by
//! root, mtime 0), gzipped without a timestamp, its two digests computed while it streams.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::{Compression, GzBuilder};
use sha2::{Digest as _, Sha256};

use crate::error::{ImageError, Result};
use crate::image::{ImageFile, LayerSpec};

/// Fixed so that the compressed bytes, and so the layer digest, never depend on a default.
const GZIP_LEVEL: u32 = 6;
/// Mode of the parent folders the layer adds for its files.
const DIR_MODE: u32 = 0o755;

/// A layer written to the build folder.
pub(crate) struct WrittenLayer {
    /// `sha256:<hex>` of the gzipped tar (the blob).
    pub digest: String,
    /// `sha256:<hex>` of the uncompressed tar (`rootfs.diff_ids`).
    pub diff_id: String,
    /// Size of the gzipped tar in bytes.
    pub size: u64,
    /// Where the gzipped tar is.
    pub path: PathBuf,
}

/// What goes at one path of the layer.
enum Entry<'a> {
    Dir,
    File(&'a ImageFile),
}

/// Writes `layer` as `<blobs>/<hex digest>` and returns its digests.
pub(crate) fn write_layer(layer: &LayerSpec, blobs: &Path) -> Result<WrittenLayer> {
    let entries = plan(layer)?;
    // Unique per process and call, so concurrent builds into one folder never share a file.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let temp = blobs.join(format!(
        ".layer-{}-{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write_tar_gz(layer, &entries, &temp);
    if result.is_err() {
        // Best effort: a half-written layer is of no use to anyone.
        let _ = std::fs::remove_file(&temp);
    }
    let (digest, diff_id, size) = result?;
    let path = blobs.join(digest.trim_start_matches("sha256:"));
    std::fs::rename(&temp, &path)
        .map_err(|e| ImageError::io("cannot move the layer to", &path, e))?;
    Ok(WrittenLayer {
        digest,
        diff_id,
        size,
        path,
    })
}

/// Writes the entries as a gzipped tar at `temp`; returns the blob digest, diff_id and size.
fn write_tar_gz(
    layer: &LayerSpec,
    entries: &BTreeMap<Vec<&str>, Entry<'_>>,
    temp: &Path,
) -> Result<(String, String, u64)> {
    let file =
        File::create(temp).map_err(|e| ImageError::io("cannot create layer file", temp, e))?;

    let compressed = HashingWriter::new(BufWriter::new(file));
    // GzBuilder writes mtime 0 and no file name unless asked to.
    let gzip = GzBuilder::new().write(compressed, Compression::new(GZIP_LEVEL));
    let mut tar = tar::Builder::new(HashingWriter::new(gzip));

    for (components, entry) in entries {
        let path = components.join("/");
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        match entry {
            Entry::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(DIR_MODE);
                header.set_size(0);
                tar.append_data(&mut header, format!("{path}/"), io::empty())
                    .map_err(|e| {
                        ImageError::io(
                            format!("layer {}: cannot write folder /{path} to", layer.name),
                            temp,
                            e,
                        )
                    })?;
            }
            Entry::File(image_file) => {
                let source = open_source(image_file)?;
                let size = source.len;
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(image_file.mode & 0o7777);
                header.set_size(size);
                let reader = ExactReader {
                    inner: source.file,
                    remaining: size,
                };
                tar.append_data(&mut header, &path, reader).map_err(|e| {
                    let action = format!(
                        "layer {}: cannot copy {} (for {}) into",
                        layer.name,
                        image_file.source.display(),
                        image_file.target
                    );
                    ImageError::io(action, temp, e)
                })?;
            }
        }
    }

    let finish = |e| ImageError::io(format!("layer {}: cannot finish", layer.name), temp, e);
    let uncompressed = tar.into_inner().map_err(finish)?;
    let (gzip, diff_id, _) = uncompressed.finish();
    let compressed = gzip.finish().map_err(finish)?;
    let (buffered, digest, size) = compressed.finish();
    let file = buffered.into_inner().map_err(|e| finish(e.into_error()))?;
    file.sync_all().map_err(finish)?;
    Ok((digest, diff_id, size))
}

/// The layer's entries by path components: sorted, each parent folder before its children.
fn plan(layer: &LayerSpec) -> Result<BTreeMap<Vec<&str>, Entry<'_>>> {
    let mut entries: BTreeMap<Vec<&str>, Entry<'_>> = BTreeMap::new();
    let conflict = |target: &str| ImageError::TargetConflict {
        layer: layer.name.clone(),
        target: target.to_owned(),
    };
    for file in &layer.files {
        let components = target_components(&layer.name, &file.target)?;
        for depth in 1..components.len() {
            let parent = components[..depth].to_vec();
            match entries.get(&parent) {
                Some(Entry::File(_)) => return Err(conflict(&format!("/{}", parent.join("/")))),
                Some(Entry::Dir) => {}
                None => {
                    entries.insert(parent, Entry::Dir);
                }
            }
        }
        if entries.insert(components, Entry::File(file)).is_some() {
            return Err(conflict(&file.target));
        }
    }
    Ok(entries)
}

/// Splits an absolute target into its components, refusing anything but a clean path.
pub(crate) fn target_components<'a>(layer: &str, target: &'a str) -> Result<Vec<&'a str>> {
    let invalid = |reason| ImageError::InvalidTarget {
        layer: layer.to_owned(),
        target: target.to_owned(),
        reason,
    };
    let relative = target
        .strip_prefix('/')
        .ok_or_else(|| invalid("it must be an absolute path"))?;
    if relative.is_empty() {
        return Err(invalid("it names the root folder, not a file"));
    }
    if target.contains('\0') {
        return Err(invalid("it contains a NUL byte"));
    }
    let components: Vec<&str> = relative.split('/').collect();
    if components
        .iter()
        .any(|c| c.is_empty() || *c == "." || *c == "..")
    {
        return Err(invalid(
            "it must not contain empty, `.` or `..` components or end with `/`",
        ));
    }
    Ok(components)
}

/// A source file opened for reading, with the size the tar header announces.
pub(crate) struct Source {
    pub file: File,
    pub len: u64,
}

/// Opens an image file's source (following symlinks) and checks that it is a regular file.
pub(crate) fn open_source(image_file: &ImageFile) -> Result<Source> {
    let missing = |source| ImageError::SourceMissing {
        path: image_file.source.clone(),
        target: image_file.target.clone(),
        source,
    };
    let file = File::open(&image_file.source).map_err(missing)?;
    let metadata = file.metadata().map_err(missing)?;
    if !metadata.is_file() {
        return Err(ImageError::SourceNotFile {
            path: image_file.source.clone(),
            target: image_file.target.clone(),
        });
    }
    Ok(Source {
        file,
        len: metadata.len(),
    })
}

/// Reads exactly `remaining` bytes, failing if the file shrank or grew since its size was
/// taken: the tar header already announced that size, and a mismatch would corrupt the archive.
struct ExactReader<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            // One more byte available means the file grew while it was being read.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::other("the file grew while it was being read")),
            };
        }
        let limit = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let read = self.inner.read(&mut buf[..limit])?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was being read",
            ));
        }
        self.remaining -= read as u64;
        Ok(read)
    }
}

/// A writer that hashes (SHA-256) and counts what passes through it.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// The inner writer, the `sha256:<hex>` digest and the byte count.
    pub(crate) fn finish(self) -> (W, String, u64) {
        (
            self.inner,
            digest_string(&self.hasher.finalize()),
            self.written,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.written += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `sha256:<hex>` of `bytes`.
pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    digest_string(&Sha256::digest(bytes))
}

fn digest_string(hash: &[u8]) -> String {
    let mut out = String::with_capacity(7 + hash.len() * 2);
    out.push_str("sha256:");
    for byte in hash {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_must_be_clean_absolute_paths() {
        assert_eq!(
            target_components("l", "/usr/bin/ragway").unwrap(),
            ["usr", "bin", "ragway"]
        );
        for bad in ["usr/bin/x", "/", "/a//b", "/a/../b", "/a/./b", "/a/"] {
            assert!(target_components("l", bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn plan_adds_parents_sorted_and_refuses_conflicts() {
        let file = |target: &str| ImageFile {
            source: PathBuf::from("/dev/null"),
            target: target.into(),
            mode: 0o644,
        };
        let layer = LayerSpec {
            name: "l".into(),
            files: vec![file("/b/c"), file("/a/x/y"), file("/a-b")],
        };
        let planned: Vec<String> = plan(&layer).unwrap().keys().map(|k| k.join("/")).collect();
        assert_eq!(planned, ["a", "a/x", "a/x/y", "a-b", "b", "b/c"]);

        let twice = LayerSpec {
            name: "l".into(),
            files: vec![file("/a"), file("/a")],
        };
        assert!(matches!(
            plan(&twice),
            Err(ImageError::TargetConflict { .. })
        ));
        let file_and_dir = LayerSpec {
            name: "l".into(),
            files: vec![file("/a"), file("/a/b")],
        };
        assert!(matches!(
            plan(&file_and_dir),
            Err(ImageError::TargetConflict { .. })
        ));
        let dir_and_file = LayerSpec {
            name: "l".into(),
            files: vec![file("/a/b"), file("/a")],
        };
        assert!(matches!(
            plan(&dir_and_file),
            Err(ImageError::TargetConflict { .. })
        ));
    }

    #[test]
    fn a_source_that_changes_size_while_read_is_an_error() {
        let copy = |bytes: &[u8], remaining| {
            let reader = ExactReader {
                inner: io::Cursor::new(bytes.to_vec()),
                remaining,
            };
            io::copy(&mut { reader }, &mut io::sink())
        };
        assert_eq!(copy(b"abc", 3).unwrap(), 3);
        assert!(copy(b"abc", 5).unwrap_err().to_string().contains("shrank"));
        assert!(copy(b"abc", 2).unwrap_err().to_string().contains("grew"));
    }

    #[test]
    fn digest_of_empty_input() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
