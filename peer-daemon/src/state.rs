//! The daemon's state directory and its long-term identity key, created on first start.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use directories::ProjectDirs;
use proto::identity::Identity;

/// Name of the key file inside the state directory.
pub const KEY_FILE: &str = "identity.key";

/// The platform's data directory for peerlink, then one directory per name so that several
/// daemons on one machine keep separate identities: on Linux `$XDG_DATA_HOME/peerlink/<name>`,
/// else `~/.local/share/peerlink/<name>` (`directories` follows the XDG spec). The name is
/// reduced to letters, digits, `-` and `_`, so it cannot climb out (`../x` is `___x`).
pub fn default_state_dir(name: Option<&str>) -> PathBuf {
    // No home directory at all: the working directory, as a last resort.
    let base = ProjectDirs::from("", "", "peerlink").map_or_else(
        || Path::new(".").join("peerlink"),
        |dirs| dirs.data_dir().to_owned(),
    );
    let leaf: String = name
        .unwrap_or("default")
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    base.join(leaf)
}

/// Creates `path` for this user's eyes only (0600 from the start, so nobody can open it before
/// the mode applies), failing if it exists: for secrets in the state directory.
pub fn create_private(path: &Path) -> anyhow::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// The lock file inside the state directory: held (an exclusive `flock`) while a daemon runs,
/// and holding that daemon's pid for the message a second one gets.
pub const LOCK_FILE: &str = "daemon.lock";

/// Proof that this process is the only daemon on its state directory; the lock goes with it
/// (the kernel releases it when the process ends, however it ends).
#[derive(Debug)]
pub struct StateLock {
    _file: fs::File,
}

/// Takes the state directory for this process alone (creating it, 0700): a second daemon on the
/// same directory would take the identity over (peers would follow it and the first one's
/// messages would time out unexplained), so it stops at once, naming the running one.
pub fn lock_state_dir(dir: &Path) -> anyhow::Result<StateLock> {
    fs::create_dir_all(dir)
        .with_context(|| format!("creating state directory {}", dir.display()))?;
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    let path = dir.join(LOCK_FILE);
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let holder = fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            let who = if !holder.is_empty()
                && holder.len() <= 20
                && holder.bytes().all(|b| b.is_ascii_digit())
            {
                format!("another peer-daemon (pid {holder})")
            } else {
                "another peer-daemon".to_owned()
            };
            bail!(
                "{who} is already running with the state directory {}: one identity runs in one daemon at a time. \
                 To run a second identity beside it, start this one with another --name (each name has its own state directory) or --state-dir DIR",
                dir.display()
            );
        }
        Err(fs::TryLockError::Error(error)) => {
            return Err(error).with_context(|| format!("locking {}", path.display()));
        }
    }
    // Ours now: say who holds it.
    file.set_len(0)?;
    writeln!(file, "{}", std::process::id())?;
    Ok(StateLock { _file: file })
}

/// Loads the identity from `dir`, creating the directory (0700) and a fresh key (0600) when
/// there is none yet.
pub fn load_or_create_identity(dir: &Path) -> anyhow::Result<Identity> {
    fs::create_dir_all(dir)
        .with_context(|| format!("creating state directory {}", dir.display()))?;
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    let path = dir.join(KEY_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let mode = fs::metadata(&path)?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "key file is readable by others; fixing to 0600");
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
            }
            let mut secret = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut secret).with_context(|| {
                format!("{} is not a peerlink key (64 hex digits)", path.display())
            })?;
            Ok(Identity::from_secret(secret))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let identity = Identity::from_secret(rand::random());
            let mut file = create_private(&path)?;
            writeln!(file, "{}", hex::encode(identity.secret()))?;
            file.sync_all()?;
            tracing::info!(path = %path.display(), uuid = %identity.uuid(), "created a new identity");
            Ok(identity)
        }
        Err(error) => bail!("reading {}: {error}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_with_private_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("alice");
        let first = load_or_create_identity(&state).unwrap();
        let again = load_or_create_identity(&state).unwrap();
        assert_eq!(first.uuid(), again.uuid());
        let mode = fs::metadata(state.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let other = load_or_create_identity(&dir.path().join("bob")).unwrap();
        assert_ne!(first.uuid(), other.uuid());
    }

    #[test]
    fn a_second_lock_on_one_directory_is_refused_with_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("alice");
        let held = lock_state_dir(&state).unwrap();
        let error = format!("{:#}", lock_state_dir(&state).unwrap_err());
        assert!(
            error.contains(&format!("pid {}", std::process::id())),
            "{error}"
        );
        assert!(
            error.contains("--name") && error.contains("--state-dir"),
            "{error}"
        );
        assert!(
            lock_state_dir(&dir.path().join("bob")).is_ok(),
            "another directory is free"
        );
        drop(held);
        assert!(lock_state_dir(&state).is_ok(), "free again once released");
    }

    #[test]
    fn default_dirs_differ_by_name() {
        assert_ne!(
            default_state_dir(Some("alice")),
            default_state_dir(Some("bob"))
        );
        assert!(default_state_dir(Some("../x")).ends_with("peerlink/___x"));
    }
}
