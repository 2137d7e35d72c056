//! The data directory: made private, checked before anything is written
//! to it, and held by one embedded server at a time. Each failure says what
//! to do about it, for the person who just typed `cargo run`.

use std::fs::File;
use std::io::ErrorKind;
use std::path::Path;

use anyhow::bail;

const HOW_TO_CHOOSE: &str = "choose another with --data-dir or STARLING_DATA_DIR";

/// Creates `dir` if missing, readable by its owner only (it holds the
/// token signing key, password hashes and everyone's email address), and
/// checks that this process can write there. An existing directory others
/// may read is kept as it is, with a warning.
pub fn prepare(dir: &Path) -> anyhow::Result<()> {
    match std::fs::metadata(dir) {
        Ok(metadata) if !metadata.is_dir() => bail!(
            "the data directory {} is a file, not a directory: {HOW_TO_CHOOSE}",
            dir.display()
        ),
        Ok(metadata) => warn_if_others_may_read(dir, &metadata),
        Err(error) if error.kind() == ErrorKind::NotFound => create_private(dir)?,
        Err(error) => bail!(
            "cannot read the data directory {}: {error}; {HOW_TO_CHOOSE}",
            dir.display()
        ),
    }
    // SQLite would say only "unable to open database file".
    let probe = dir.join(".starling-write-check");
    if let Err(error) = std::fs::write(&probe, b"") {
        bail!(
            "cannot write in the data directory {}: {error}; make it writable by this user, \
             or {HOW_TO_CHOOSE}",
            dir.display()
        );
    }
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

fn create_private(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    match builder.create(dir) {
        Ok(()) => Ok(()),
        Err(error) => bail!(
            "cannot create the data directory {}: {error}; {HOW_TO_CHOOSE}",
            dir.display()
        ),
    }
}

#[cfg(unix)]
fn warn_if_others_may_read(dir: &Path, metadata: &std::fs::Metadata) {
    use std::os::unix::fs::PermissionsExt;
    if metadata.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            path = %dir.display(),
            "the data directory is open to other users (it holds password hashes and the \
             token signing key): chmod 700 it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_others_may_read(_dir: &Path, _metadata: &std::fs::Metadata) {}

/// Held while an embedded server runs on `dir`: its timelines, caches and
/// event log live in that process's memory, so a second server on the same
/// files would serve feeds the first never sees. Released when dropped
/// (and by the system when the process dies).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    pub fn acquire(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("starling.lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|error| anyhow::anyhow!("cannot open {}: {error}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "another Starling is already serving the data directory {} (embedded, its \
                 timelines and caches live in that process, so a second one would disagree \
                 with it): stop that one, or give this one its own directory with --data-dir \
                 or STARLING_DATA_DIR",
                dir.display()
            ),
            Err(std::fs::TryLockError::Error(error)) => {
                bail!("cannot lock {}: {error}", path.display())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_data_directory_is_private() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("nested/data");
        prepare(&dir).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{mode:o}");
        }
        assert!(!dir.join(".starling-write-check").exists());
    }

    #[test]
    fn a_file_in_the_way_is_named_as_such() {
        let parent = tempfile::tempdir().unwrap();
        let file = parent.path().join("data");
        std::fs::write(&file, b"").unwrap();
        let error = prepare(&file).unwrap_err().to_string();
        assert!(error.contains("is a file, not a directory"), "{error}");
        assert!(error.contains("--data-dir"), "{error}");
    }

    #[test]
    fn one_server_holds_a_data_directory_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        let error = DataDirLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(error.contains("already serving"), "{error}");
        drop(first);
        DataDirLock::acquire(dir.path()).unwrap();
    }
}
