//! The one way the toolkit changes a file: atomic replacement, durable by default.
//!
//! [`replace`] guarantees that a reader sees the old bytes or the new bytes and
//! never a mix, and with [`Durability::Durable`] that after it returns the new
//! bytes survive a crash or power loss: it writes a temp file in the same
//! folder (`O_EXCL`, mode 0600), fsyncs it, renames it over the target and
//! fsyncs the folder. A live file is never opened for writing in place.
//!
//! Temp files are named `.NAME.PID.SEQ.tmp` and held under an flock(2) while
//! written, so a later writer can tell a leftover of a killed writer (no lock
//! held) from a write in progress and removes the leftovers it finds.
//!
//! Also here: size-limited reads, and folders created 0700 that refuse to be
//! symlinks leading out of the state root.
//!
//! Everything the toolkit keeps (state, backups, checkpoints, lock records,
//! the restore journal, the audit log) is a regular file or is refused with
//! exit 6: [`open_kept`] and [`open_kept_append`] are the one way such a file
//! is opened, and they never block — no open(2) of a FIFO waits for a peer,
//! no device node is opened at all — and [`replace`] never renames over a
//! device, FIFO or socket. Symlinks are followed (a state file or lock record
//! may be a symlink inside the state root, docs/architecture.md, "On disk"); whether one leads
//! out of the root is the caller's check ([`check_not_escaping`]), made once
//! per command. A file the *user* names as output goes through
//! [`write_output`] instead, which writes through a device or FIFO like a
//! shell redirection (`jq . > /dev/stdout`) and never renames over it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{Error, Kind, Result};

/// How hard [`replace`] works to keep the new bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// fsync the file and its folder: survives power loss. Every state,
    /// backup and checkpoint write.
    Durable,
    /// Atomic rename only. For lock records, which never outlive a boot
    /// (their holders carry the boot id), so fsync would buy nothing.
    Atomic,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Atomically replaces `path` with `bytes` (see the module docs).
pub fn replace(path: &Path, bytes: &[u8], durability: Durability) -> Result<()> {
    // A cleaner can remove our temp file in the instant between its creation
    // and our flock; the rename then fails with NotFound and one retry suffices.
    match replace_once(path, bytes, durability, &[]) {
        Err(e) if e.io_kind() == Some(io::ErrorKind::NotFound) && e.path() == Some(path) => {
            replace_once(path, bytes, durability, &[])
        }
        other => other,
    }
}

fn replace_once(path: &Path, bytes: &[u8], durability: Durability, first: &[&Path]) -> Result<()> {
    replace_as(path, durability, false, first, |w| {
        w.write_all(bytes)
            .map_err(|e| Error::io(e, "cannot write", path))
    })
}

/// [`replace`], durable, that also fsyncs the folders `first` after the new
/// bytes are on disk and before the rename: a change made there earlier (a
/// backup's link) is durable before the new file can be seen. On ext4 the
/// new file's fdatasync commits the journal transaction holding that change
/// too, so each of these fsyncs finds nothing left to write.
pub fn replace_syncing(path: &Path, bytes: &[u8], first: &[&Path]) -> Result<()> {
    replace_syncing_with(path, first, |w| {
        w.write_all(bytes)
            .map_err(|e| Error::io(e, "cannot write", path))
    })
}

/// [`replace_syncing`] with the new bytes written in pieces by `fill` (one
/// fdatasync after the last). `fill` runs again, from the start, on the one
/// retry of a temp file removed by a cleaner.
pub fn replace_syncing_with(
    path: &Path,
    first: &[&Path],
    mut fill: impl FnMut(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    match replace_as(path, Durability::Durable, false, first, &mut fill) {
        Err(e) if e.io_kind() == Some(io::ErrorKind::NotFound) && e.path() == Some(path) => {
            replace_as(path, Durability::Durable, false, first, &mut fill)
        }
        other => other,
    }
}

/// [`replace`] with the new bytes streamed by `fill` into the temp file
/// (large output need not be held in memory). No retry: `fill` runs once.
pub fn replace_with<T>(
    path: &Path,
    durability: Durability,
    fill: impl FnOnce(&mut dyn Write) -> Result<T>,
) -> Result<T> {
    replace_as(path, durability, false, &[], fill)
}

/// [`replace_with`]; when `shared`, the new file gets the mode a shell
/// redirection would give it (the replaced file's, else 0644 less the
/// umask) instead of 0600, set before the rename; the folders `first` are
/// fsynced before the rename (see [`replace_syncing`]).
fn replace_as<T>(
    path: &Path,
    durability: Durability,
    shared: bool,
    first: &[&Path],
    fill: impl FnOnce(&mut dyn Write) -> Result<T>,
) -> Result<T> {
    refuse_special(path)?;
    let dir = parent_of(path);
    let name = path
        .file_name()
        .ok_or_else(|| Error::general("cannot write a path with no file name").with_path(path))?;
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if shared { 0o644 } else { 0o600 })
        .custom_flags(rustix::fs::OFlags::CLOEXEC.bits() as i32)
        .open(&tmp)
        .map_err(|e| Error::io(e, "cannot create a temp file", &tmp))?;
    if shared && let Ok(old) = fs::metadata(path) {
        let mode = fs::Permissions::from_mode(old.permissions().mode() & 0o7777);
        if let Err(e) = file.set_permissions(mode) {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(e, "cannot set the mode of", &tmp));
        }
    }
    // Marks the temp file as in use; released by the kernel if we are killed.
    let _ = file.try_lock();
    let mut w = io::BufWriter::with_capacity(1 << 16, file);
    let result = (|| {
        let value = fill(&mut w)?;
        w.flush().map_err(|e| Error::io(e, "cannot write", &tmp))?;
        if durability == Durability::Durable {
            w.get_ref()
                .sync_data()
                .map_err(|e| Error::io(e, "cannot flush to disk", &tmp))?;
        }
        for dir in first {
            sync_dir(dir)?;
        }
        fs::rename(&tmp, path).map_err(|e| Error::io(e, "cannot rename into place", path))?;
        Ok(value)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    drop(w);
    if durability == Durability::Durable {
        sync_dir(dir)?;
    }
    remove_leftovers(dir, &name.to_string_lossy());
    result
}

/// fsyncs a folder, making renames and links in it durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).map_err(|e| Error::io(e, "cannot open folder", dir))?;
    d.sync_all()
        .map_err(|e| Error::io(e, "cannot flush folder to disk", dir))
}

/// Removes `path`; a missing file is fine. Temp files of the same name left
/// by writers killed mid-write go with it (a removal is the last write).
pub fn remove(path: &Path) -> io::Result<()> {
    let result = match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    };
    if let Some(name) = path.file_name() {
        remove_leftovers(parent_of(path), &name.to_string_lossy());
    }
    result
}

/// Removes temp files of `name` left by writers that were killed mid-write.
fn remove_leftovers(dir: &Path, name: &str) {
    let prefix = format!(".{name}.");
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(n) = file_name.to_str() else {
            continue;
        };
        if !(n.starts_with(&prefix) && n.ends_with(".tmp")) {
            continue;
        }
        let p = entry.path();
        // A writer in progress holds the lock; a killed one no longer does.
        // Not a regular file: not one of ours, left alone.
        if let Ok(f) = open_kept(&p)
            && f.try_lock().is_ok()
        {
            let _ = fs::remove_file(&p);
        }
    }
}

/// Lists leftover temp files in `dir` (any target), for cleanup and health.
pub fn leftover_temps(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with('.') && n.ends_with(".tmp")
        })
        .map(|e| e.path())
        .filter(|p| open_kept(p).is_ok_and(|f| f.try_lock().is_ok()))
        .collect()
}

/// Opens a file the toolkit keeps, for reading (see the module docs): a
/// path that is not a regular file (a FIFO, socket, device or folder, or a
/// symlink to one) is refused with exit 6 before it is opened, and the open
/// itself is non-blocking, so a file swapped for a FIFO in between cannot
/// hang us either. A missing file is an error whose `io_kind` is `NotFound`.
pub fn open_kept(path: &Path) -> Result<File> {
    open_regular(path, OpenOptions::new().read(true), 0, "cannot read")
}

/// Opens a file the toolkit keeps for appending (the audit log), creating it
/// 0600; the same refusals as [`open_kept`]. `path` must already be resolved:
/// a symlink there is refused (`O_NOFOLLOW`), so none can be planted between
/// the caller's check and this open.
pub fn open_kept_append(path: &Path) -> Result<File> {
    open_regular(
        path,
        OpenOptions::new().append(true).create(true).mode(0o600),
        rustix::fs::OFlags::NOFOLLOW.bits() as i32,
        "cannot open for appending",
    )
}

/// [`open_kept_append`] of a file that exists already: opened without
/// `O_CREAT`, so nothing is created; `None` when there is no such file.
pub fn open_kept_append_existing(path: &Path) -> Result<Option<File>> {
    match open_regular(
        path,
        OpenOptions::new().append(true),
        rustix::fs::OFlags::NOFOLLOW.bits() as i32,
        "cannot open for appending",
    ) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.io_kind() == Some(io::ErrorKind::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

fn open_regular(path: &Path, opts: &mut OpenOptions, extra: i32, what: &str) -> Result<File> {
    // stat first: opening a device can have effects of its own (a tty, a tape).
    match fs::metadata(path) {
        Ok(m) if !m.is_file() => return Err(not_regular(path, m.file_type())),
        _ => {}
    }
    let flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY;
    let f = opts
        .custom_flags(flags.bits() as i32 | extra)
        .open(path)
        .map_err(|e| Error::io(e, what, path))?;
    let m = f.metadata().map_err(|e| Error::io(e, what, path))?;
    if !m.is_file() {
        return Err(not_regular(path, m.file_type()));
    }
    Ok(f)
}

/// Refuses (exit 6) to replace `path` when it names a device, FIFO or socket
/// (or a symlink to one): renaming over it would destroy something not ours.
fn refuse_special(path: &Path) -> Result<()> {
    match fs::metadata(path) {
        Ok(m) if is_special(m.file_type()) => Err(not_regular(path, m.file_type())),
        _ => Ok(()),
    }
}

fn is_special(t: fs::FileType) -> bool {
    t.is_fifo() || t.is_socket() || t.is_char_device() || t.is_block_device()
}

/// What a file that is not a regular file is, for messages ("a FIFO").
pub fn describe(t: fs::FileType) -> &'static str {
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_dir() {
        "a folder"
    } else if t.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// The refusal of a kept file that is not a regular file (exit 6).
pub fn not_regular(path: &Path, t: fs::FileType) -> Error {
    Error::new(
        Kind::PermissionDenied,
        "refusing a file that is not a regular file",
    )
    .with_path(path)
    .because(format!("it is {}", describe(t)))
    .hint("the toolkit keeps its state, backups, checkpoints, lock records and audit log in regular files: move that one away or point STATE_FILE/AUDIT_LOG at a regular file")
}

/// Writes output the user asked for to `path` (`--output FILE`), streaming it
/// through `fill`. A regular file (or a missing one, or a symlink to either)
/// is replaced atomically and durably: temp file, fsync, rename, fsync the
/// folder, as [`replace`]. A device, FIFO or a symlink to one (such as
/// `/dev/stdout`) is written through, like a shell redirection, and never
/// renamed over; opening it never blocks (a FIFO with no reader is an
/// error, not a hang). A socket cannot be opened and is refused.
pub fn write_output<T>(path: &Path, fill: impl FnOnce(&mut dyn Write) -> Result<T>) -> Result<T> {
    write_output_as(path, false, fill)
}

/// [`write_output`] for a file other users' programs read (`metrics
/// --output` for a scraper running as its own user): a replaced file keeps
/// its mode and a new one is 0644 less the umask, as `> FILE` makes it,
/// instead of 0600. Still atomic: the mode is set before the rename.
pub fn write_output_shared<T>(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> Result<T>,
) -> Result<T> {
    write_output_as(path, true, fill)
}

fn write_output_as<T>(
    path: &Path,
    shared: bool,
    fill: impl FnOnce(&mut dyn Write) -> Result<T>,
) -> Result<T> {
    match fs::metadata(path) {
        Ok(m) if is_special(m.file_type()) => return write_through(path, fill),
        Ok(m) if m.is_dir() => {
            return Err(Error::validation("bad --output")
                .with_path(path)
                .because("it is a folder")
                .hint("name a file"));
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if fs::symlink_metadata(path).is_ok() {
                return Err(Error::general("cannot write the output")
                    .with_path(path)
                    .because("it is a symlink to nothing")
                    .hint("create its target first, or name another file"));
            }
        }
        Err(e) => return Err(Error::io(e, "cannot inspect", path)),
    }
    // A symlink to a regular file: replace its target, as `> link` writes there.
    let target = if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        fs::canonicalize(path).map_err(|e| Error::io(e, "cannot resolve", path))?
    } else {
        path.to_path_buf()
    };
    replace_as(&target, Durability::Durable, shared, &[], fill)
}

/// Whether `path` names the file our standard output is (`/dev/stdout`, a
/// symlink to `/proc/self/fd/1`, the tty we print to): a summary printed
/// there would land inside the output.
pub fn is_stdout(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    // The magic link names the open file itself, a pipe included.
    let (Ok(out), Ok(ours)) = (fs::metadata(path), fs::metadata("/proc/self/fd/1")) else {
        return false;
    };
    (out.dev(), out.ino()) == (ours.dev(), ours.ino())
}

fn write_through<T>(path: &Path, fill: impl FnOnce(&mut dyn Write) -> Result<T>) -> Result<T> {
    let flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY;
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
        .map_err(|e| {
            let no_reader = e.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error());
            let err = Error::io(e, "cannot open the output", path);
            if no_reader {
                err.hint("nothing is reading that FIFO or socket: start the reader first")
            } else {
                err
            }
        })?;
    // Non-blocking only for the open: the writes wait for a slow reader as usual.
    let fl = rustix::fs::fcntl_getfl(&file)
        .map_err(|e| Error::io(e.into(), "cannot open the output", path))?;
    rustix::fs::fcntl_setfl(&file, fl - rustix::fs::OFlags::NONBLOCK)
        .map_err(|e| Error::io(e.into(), "cannot open the output", path))?;
    let mut w = io::BufWriter::new(file);
    let value = fill(&mut w)?;
    w.flush()
        .map_err(|e| Error::io(e, "cannot write the output", path))?;
    Ok(value)
}

/// Reads a whole file the user named (`import FILE`), refusing one over
/// `limit` bytes (exit 10). Unlike [`read_limited`] it reads from anything a
/// shell could (`<(cmd)`, `/dev/stdin`, a FIFO), as `cat` would.
pub fn read_input_limited(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let f = File::open(path).map_err(|e| Error::io(e, "cannot read", path))?;
    read_all_limited(f, path, limit)
}

/// Reads a whole file the toolkit keeps ([`open_kept`]: regular files only,
/// never blocking), refusing one over `limit` bytes (exit 10) before reading it.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let f = open_kept(path)?;
    read_all_limited(f, path, limit)
}

fn read_all_limited(mut f: File, path: &Path, limit: u64) -> Result<Vec<u8>> {
    let len = f
        .metadata()
        .map_err(|e| Error::io(e, "cannot read", path))?
        .len();
    if len > limit {
        return Err(too_large(len, limit).with_path(path));
    }
    let mut buf = Vec::with_capacity(len as usize);
    Read::by_ref(&mut f)
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(e, "cannot read", path))?;
    if buf.len() as u64 > limit {
        return Err(too_large(buf.len() as u64, limit).with_path(path));
    }
    Ok(buf)
}

/// Reads standard input, refusing more than `limit` bytes (exit 10).
pub fn read_stdin_limited(limit: u64) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    io::stdin()
        .lock()
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(e, "cannot read", "standard input"))?;
    if buf.len() as u64 > limit {
        return Err(too_large(buf.len() as u64, limit).with_path("standard input"));
    }
    Ok(buf)
}

/// The error for input over the size limit.
pub fn too_large(len: u64, limit: u64) -> Error {
    Error::new(
        Kind::ResourceExhausted,
        format!("input of {len} bytes is over the limit of {limit} bytes"),
    )
    .hint("split the data or keep large blobs outside the state file")
}

/// Creates `dir` (mode 0700) if missing. A folder that is a symlink leading
/// out of `root` is refused with exit 6.
pub fn ensure_dir(dir: &Path, root: &Path) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => check_within_root(dir, root),
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::general("expected a folder but found a file")
            .with_path(dir)
            .hint("move that file away")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match fs::DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(Error::io(e, "cannot create folder", dir)),
            }
        }
        Err(e) => Err(Error::io(e, "cannot inspect", dir)),
    }
}

/// Refuses (exit 6) a `path` that is a symlink resolving outside `root`.
/// A missing path or a plain file passes.
pub fn check_not_escaping(path: &Path, root: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => check_within_root(path, root),
        _ => Ok(()),
    }
}

fn check_within_root(link: &Path, root: &Path) -> Result<()> {
    let refused = || {
        Error::new(
            Kind::PermissionDenied,
            "refusing a symlink that leads out of the state root",
        )
        .with_path(link)
        .hint("replace the symlink with a real file or folder inside the state root")
    };
    let target = fs::canonicalize(link).map_err(|_| refused())?;
    let root = fs::canonicalize(root).map_err(|e| Error::io(e, "cannot resolve", root))?;
    if crate::config::is_within(&target, &root) {
        Ok(())
    } else {
        Err(refused())
    }
}

/// Makes `path` readable and writable by its owner only.
pub fn set_private(path: &Path) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(e, "cannot set permissions", path))
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// [`replace`] for a file whose writers all hold a lock of their own while
/// they change it (a lock record, under its `NAME.mutex`). The temp file has
/// the fixed name `.NAME.tmp`, so the only leftover a killed writer can have
/// left is that one file: it is removed before the next write, and no folder
/// is listed (a listing per write made each write grow with the folder, and
/// filling it quadratic). The same guarantees as [`replace`] otherwise: a
/// reader sees the old or the new bytes. A temp file of that name that
/// another process still holds (the caller's lock was not honoured) sends
/// the write the way of [`replace`].
pub fn replace_serialized(path: &Path, bytes: &[u8], durability: Durability) -> Result<()> {
    refuse_special(path)?;
    let tmp = serialized_temp(path)?;
    let create = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(
                (rustix::fs::OFlags::CLOEXEC | rustix::fs::OFlags::NOFOLLOW).bits() as i32,
            )
            .open(&tmp)
    };
    // Twice at most: `clean` may remove the temp file between its creation
    // and our flock (the rename then fails with NotFound).
    for attempt in 0..2 {
        let file = match create() {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // A killed writer's leftover holds no flock; a live writer's does.
                if !open_kept(&tmp).is_ok_and(|f| f.try_lock().is_ok()) {
                    return replace(path, bytes, durability);
                }
                let _ = fs::remove_file(&tmp);
                create()
            }
            other => other,
        }
        .map_err(|e| Error::io(e, "cannot create a temp file", &tmp))?;
        // Marks the temp file as in use; released by the kernel if we are killed.
        let _ = file.try_lock();
        let result = (|| {
            (&file)
                .write_all(bytes)
                .map_err(|e| Error::io(e, "cannot write", &tmp))?;
            if durability == Durability::Durable {
                file.sync_data()
                    .map_err(|e| Error::io(e, "cannot flush to disk", &tmp))?;
            }
            fs::rename(&tmp, path).map_err(|e| Error::io(e, "cannot rename into place", path))
        })();
        match result {
            Ok(()) => break,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                let lost = e.io_kind() == Some(io::ErrorKind::NotFound) && e.path() == Some(path);
                if !lost || attempt == 1 {
                    return Err(e);
                }
            }
        }
    }
    if durability == Durability::Durable {
        sync_dir(parent_of(path))?;
    }
    Ok(())
}

/// [`remove`] for a file written by [`replace_serialized`], by a writer that
/// holds its lock: the fixed-name temp file of a killed writer goes with it,
/// and no folder is listed. A missing file is fine.
pub fn remove_serialized(path: &Path) -> Result<()> {
    let tmp = serialized_temp(path)?;
    let result = match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(e, "cannot remove", path)),
        _ => Ok(()),
    };
    let _ = fs::remove_file(&tmp);
    result
}

/// `.NAME.tmp` beside `path`: the one temp name of [`replace_serialized`].
fn serialized_temp(path: &Path) -> Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::general("cannot write a path with no file name").with_path(path))?;
    Ok(parent_of(path).join(format!(".{}.tmp", name.to_string_lossy())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn replace_writes_whole_file_0600_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        replace(&p, b"one", Durability::Durable).unwrap();
        replace(&p, b"two", Durability::Atomic).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn leftover_of_a_killed_writer_is_removed_but_a_locked_one_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        let dead = dir.path().join(".s.json.999999.0.tmp");
        fs::write(&dead, b"partial").unwrap();
        let busy = dir.path().join(".s.json.999998.0.tmp");
        fs::write(&busy, b"partial").unwrap();
        let held = File::open(&busy).unwrap();
        held.lock().unwrap();
        replace(&p, b"x", Durability::Durable).unwrap();
        assert!(!dead.exists());
        assert!(busy.exists());
    }

    #[test]
    fn kept_files_that_are_not_regular_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("s.json");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        // Each would block forever (or rename over the FIFO) without the checks.
        let e = read_limited(&fifo, 100).unwrap_err();
        assert_eq!(e.code(), crate::exit::Code::PermissionDenied);
        assert!(open_kept_append(&fifo).is_err());
        let e = replace(&fifo, b"x", Durability::Durable).unwrap_err();
        assert_eq!(e.code(), crate::exit::Code::PermissionDenied);
        assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());
        // A FIFO with no reader as output: an error at once, not a hang.
        assert!(
            write_output(&fifo, |w| w
                .write_all(b"x")
                .map_err(|e| Error::io(e, "w", "-")))
            .is_err()
        );
        assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());
    }

    #[test]
    fn read_limited_refuses_large_files_with_exit_10() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        fs::write(&p, vec![b'x'; 100]).unwrap();
        assert_eq!(read_limited(&p, 100).unwrap().len(), 100);
        let e = read_limited(&p, 99).unwrap_err();
        assert_eq!(e.code(), crate::exit::Code::ResourceExhausted);
    }
}
