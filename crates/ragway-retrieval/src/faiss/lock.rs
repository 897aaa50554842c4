//! One writer at a time per store folder, across processes: `ragway ingest` beside
//! `ragway serve`, or two servers on one folder. A commit holds the folder's `write.lock` (an
//! advisory `flock`, released by the kernel if the process dies) from its transaction until
//! it has tidied the folder, so no writer deletes the index file another has just committed.
//! The file says who holds it, for the message of a writer that waited too long.
//!
//! Creating the lock file is also how a store learns that its folder is read-only (as in the
//! image `ragway deploy` builds): then it is opened for searching only.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The lock file inside a store folder.
pub const LOCK_FILE: &str = "write.lock";

/// How long a writer waits for another to finish before giving up, naming it.
const WAIT: Duration = Duration::from_secs(120);
/// How often a waiting writer tries again.
const POLL: Duration = Duration::from_millis(50);

/// The held lock; released when dropped.
#[derive(Debug)]
pub struct WriteLock {
    _file: File,
}

/// Whether a writer can create the lock file in `dir` (false for a read-only folder or file
/// system). A folder that does not exist yet counts as writable: the first write creates it.
pub fn can_write(dir: &Path) -> bool {
    if !dir.exists() {
        return true;
    }
    match open(dir) {
        Ok(_) => true,
        Err(error) => !matches!(
            error.kind(),
            ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem
        ),
    }
}

fn open(dir: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(LOCK_FILE))
}

/// Takes `dir`'s write lock, waiting up to two minutes for another writer (logging once who it
/// waits for); then fails naming the holder.
pub fn acquire(dir: &Path, store: &str) -> Result<WriteLock> {
    let path = dir.join(LOCK_FILE);
    let mut file = open(dir).map_err(|e| Error::io(&path, e))?;
    let started = Instant::now();
    let mut logged = false;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(error)) => return Err(Error::io(&path, error)),
        }
        let holder = holder(&mut file);
        if started.elapsed() >= WAIT {
            return Err(Error::Locked { path, holder });
        }
        if !logged {
            tracing::info!(
                store,
                "waiting for the store's other writer to finish: {holder}"
            );
            logged = true;
        }
        std::thread::sleep(POLL);
    }
    // Who holds it now, for anyone who waits.
    let mut me = format!("pid {} ({})", std::process::id(), program());
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        me.push_str(&format!(", since {} s after the epoch", now.as_secs()));
    }
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(me.as_bytes()));
    Ok(WriteLock { _file: file })
}

/// What the lock file says about its holder.
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file
        .rewind()
        .and_then(|_| file.take(256).read_to_string(&mut text));
    let text = text.trim();
    if text.is_empty() {
        "another process".to_owned()
    } else {
        text.to_owned()
    }
}

/// This program as `ps` would show it, shortly: `ragway ingest`.
fn program() -> String {
    let mut args = std::env::args();
    let name = args
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "?".to_owned());
    match args.next() {
        Some(command) if !command.starts_with('-') => format!("{name} {command}"),
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_waits_for_the_first_and_the_holder_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path(), "s").unwrap();
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert!(
            text.starts_with(&format!("pid {} (", std::process::id())),
            "{text}"
        );
        // Another open file description contends like another process.
        let released = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let waiter = {
            let (dir, released) = (dir.path().to_owned(), released.clone());
            std::thread::spawn(move || {
                let lock = acquire(&dir, "s").unwrap();
                (released.load(std::sync::atomic::Ordering::SeqCst), lock)
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        released.store(true, std::sync::atomic::Ordering::SeqCst);
        drop(first);
        let (after_release, _second) = waiter.join().unwrap();
        assert!(
            after_release,
            "the second writer got the lock while the first held it"
        );
        assert!(can_write(dir.path()));
    }
}
