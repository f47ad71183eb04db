//! Durable writes to a local file system: when a write returns, both the file's bytes and its
//! name in its folder are on disk, so a power loss right after it cannot leave the name
//! pointing at missing or partial data.
//!
//! A write goes to a staging file `<name>#<n>` (the names object_store's local store uses,
//! hidden from its listings and removed by the sink's open when a killed run left one),
//! which is fsynced, then hard-linked (create-if-absent) or renamed (replace) into place,
//! and then the folder is fsynced. Folders the write creates are fsynced into their parents.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// How a staged file takes its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// Replace whatever is at the path (a rename).
    Replace,
    /// Only if nothing is at the path (a hard link); fails with `AlreadyExists` otherwise.
    CreateNew,
}

/// Writes `bytes` to `path` durably (see the module docs). `mode` sets the Unix permission
/// bits of the new file (for example `0o600` for a secret); `None` keeps the default
/// (`0o666` less the umask). For modules that write local files without an object store.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn write_file(
    path: &Path,
    bytes: &[u8],
    place: Place,
    mode: Option<u32>,
) -> io::Result<()> {
    let staged = Staged::new(path, mode)?;
    staged.file().write_all(bytes)?;
    staged.commit(place)
}

/// A staging file being written for `target`; removed on drop unless committed.
#[derive(Debug)]
pub(crate) struct Staged {
    file: File,
    staging: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl Staged {
    /// Creates a new staging file next to `target` (creating and fsyncing missing folders).
    pub(crate) fn new(target: &Path, mode: Option<u32>) -> io::Result<Staged> {
        let dir = parent(target)?;
        create_dirs(dir)?;
        for n in 1u32.. {
            let mut staging = target.as_os_str().to_owned();
            staging.push(format!("#{n}"));
            let staging = PathBuf::from(staging);
            let mut options = OpenOptions::new();
            options.read(true).write(true).create_new(true);
            #[cfg(unix)]
            if let Some(mode) = mode {
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
            }
            #[cfg(not(unix))]
            let _ = mode;
            match options.open(&staging) {
                Ok(file) => {
                    return Ok(Staged {
                        file,
                        staging,
                        target: target.to_path_buf(),
                        committed: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        unreachable!("staging names are unbounded")
    }

    /// The staging file, to write the content to.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Fsyncs the staging file, puts it in place and fsyncs the folder.
    pub(crate) fn commit(mut self, place: Place) -> io::Result<()> {
        self.file.sync_all()?;
        record(Step::SyncFile, &self.staging);
        match place {
            Place::Replace => {
                std::fs::rename(&self.staging, &self.target)?;
                record(Step::Rename, &self.target);
            }
            Place::CreateNew => {
                std::fs::hard_link(&self.staging, &self.target)?;
                record(Step::Link, &self.target);
                // The staging name goes (a leftover is removed by the next open); the folder
                // fsync below makes both changes durable.
                self.committed = true;
                let _ = std::fs::remove_file(&self.staging);
            }
        }
        self.committed = true;
        sync_dir(parent(&self.target)?)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.staging);
        }
    }
}

fn parent(path: &Path) -> io::Result<&Path> {
    path.parent().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no parent folder", path.display()),
        )
    })
}

/// Creates `dir` and its missing ancestors, each fsynced into its parent.
pub(crate) fn create_dirs(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    loop {
        match std::fs::metadata(at) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing.push(at);
                match at.parent() {
                    Some(p) => at = p,
                    None => break,
                }
            }
            Err(e) => return Err(e),
        }
    }
    for d in missing.into_iter().rev() {
        match std::fs::create_dir(d) {
            Ok(()) => record(Step::CreateDir, d),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if let Some(p) = d.parent() {
            sync_dir(p)?;
        }
    }
    Ok(())
}

/// Fsyncs a folder, making the names created, renamed or removed in it durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()?;
        record(Step::SyncDir, dir);
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Takes an exclusive lock on a folder (`flock` on its descriptor), held until the returned
/// file is dropped. Writers of one machine that take it around a check-then-replace of an
/// object in that folder make the pair atomic towards each other.
pub(crate) fn lock_dir(dir: &Path) -> io::Result<File> {
    let f = File::open(dir)?;
    f.lock()?;
    Ok(f)
}

/// One step of a durable write, recorded in tests (see `steps`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    CreateDir,
    SyncFile,
    Link,
    Rename,
    SyncDir,
}

#[cfg(test)]
static STEPS: std::sync::Mutex<Vec<(Step, PathBuf)>> = std::sync::Mutex::new(Vec::new());

#[cfg(not(test))]
fn record(_: Step, _: &Path) {}

#[cfg(test)]
fn record(step: Step, path: &Path) {
    STEPS.lock().unwrap().push((step, path.to_path_buf()));
}

/// The steps recorded so far on paths under `root` (tests only).
#[cfg(test)]
pub(crate) fn steps(root: &Path) -> Vec<(Step, PathBuf)> {
    STEPS
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, p)| p.starts_with(root))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_synced_before_its_name_and_the_folder_after() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let target = root.join("new/deeper/m.json");
        write_file(&target, b"{}", Place::CreateNew, Some(0o600)).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"{}");
        let staging = root.join("new/deeper/m.json#1");
        assert!(!staging.exists(), "the staging name is gone");
        let expected = vec![
            (Step::CreateDir, root.join("new")),
            (Step::SyncDir, root.clone()),
            (Step::CreateDir, root.join("new/deeper")),
            (Step::SyncDir, root.join("new")),
            (Step::SyncFile, staging),
            (Step::Link, target.clone()),
            (Step::SyncDir, root.join("new/deeper")),
        ];
        assert_eq!(steps(&root), expected);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&target).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        let e = write_file(&target, b"again", Place::CreateNew, None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(
            std::fs::read(&target).unwrap(),
            b"{}",
            "create-if-absent kept it"
        );

        write_file(&target, b"[]", Place::Replace, None).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"[]");
        let tail: Vec<Step> = steps(&root)
            .iter()
            .rev()
            .take(3)
            .rev()
            .map(|s| s.0)
            .collect();
        assert_eq!(tail, [Step::SyncFile, Step::Rename, Step::SyncDir]);
        let left: Vec<_> = std::fs::read_dir(root.join("new/deeper"))
            .unwrap()
            .collect();
        assert_eq!(left.len(), 1, "no staging file left: {left:?}");
    }
}
