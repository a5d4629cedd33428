//! The contacts file (`<state-dir>/contacts.json`): the public keys of peers this daemon talked
//! to, with the name the index vouched for then, so that a contact can be found in the DHT
//! (whose records are keyed by public key) when the index cannot answer.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use proto::identity::{parse_public_key, uuid_for_key};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::chat::Contact;

/// Most contacts kept; the ones heard from longest ago go first.
pub const MAX_CONTACTS: usize = 1024;
/// The file's name in the state directory.
pub const FILE: &str = "contacts.json";
/// Largest contacts file read (a hand-edited or corrupt one is not read whole into memory).
const MAX_FILE_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    uuid: Uuid,
    public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// Unix seconds when we last heard from it.
    seen: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct File {
    version: u32,
    contacts: Vec<Entry>,
}

/// The contacts, in memory and on disk.
#[derive(Debug)]
pub struct Contacts {
    path: PathBuf,
    by_uuid: HashMap<Uuid, (Contact, u64)>,
}

impl Contacts {
    /// Reads `<state_dir>/contacts.json`; a missing file is an empty list, a broken one is
    /// reported and set aside as `contacts.json.bad` (it would be overwritten otherwise).
    pub fn load(state_dir: &Path) -> Contacts {
        let path = state_dir.join(FILE);
        let mut contacts = Contacts {
            path: path.clone(),
            by_uuid: HashMap::new(),
        };
        let read = std::fs::File::open(&path).and_then(|file| {
            let mut text = String::new();
            std::io::Read::read_to_string(
                &mut std::io::Read::take(file, MAX_FILE_BYTES),
                &mut text,
            )?;
            Ok(text)
        });
        let text = match read {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return contacts,
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), "could not read the contacts");
                return contacts;
            }
        };
        match serde_json::from_str::<File>(&text) {
            Ok(file) => {
                for entry in file.contacts {
                    // Only entries whose UUID belongs to their key.
                    let Ok(public_key) = parse_public_key(&entry.public_key) else {
                        continue;
                    };
                    if uuid_for_key(&public_key) != entry.uuid {
                        continue;
                    }
                    let contact = Contact {
                        uuid: entry.uuid,
                        public_key,
                        name: entry.name,
                    };
                    contacts.by_uuid.insert(entry.uuid, (contact, entry.seen));
                }
                contacts.trim();
            }
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), "the contacts file is broken; set aside as contacts.json.bad");
                let _ = std::fs::rename(&path, path.with_extension("json.bad"));
            }
        }
        contacts
    }

    /// How many contacts there are.
    pub fn len(&self) -> usize {
        self.by_uuid.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_uuid.is_empty()
    }

    /// The contact with this UUID.
    pub fn get(&self, uuid: &Uuid) -> Option<&Contact> {
        self.by_uuid.get(uuid).map(|(c, _)| c)
    }

    /// The contact last vouched to be called `name` (names compare without ASCII case), if
    /// exactly one is.
    pub fn by_name(&self, name: &str) -> Option<&Contact> {
        let mut found = self.by_uuid.values().map(|(c, _)| c).filter(|c| {
            c.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        });
        let first = found.next()?;
        found.next().is_none().then_some(first)
    }

    /// Remembers (or updates) a contact heard from at `now`; returns whether anything that
    /// the file keeps changed (a contact's `seen` alone is not worth a write).
    pub fn remember(&mut self, contact: Contact, now: u64) -> bool {
        // A name dropped by the index is kept: it is still the last one it vouched for.
        let contact = match self.by_uuid.get(&contact.uuid) {
            Some((old, _)) if contact.name.is_none() => Contact {
                name: old.name.clone(),
                ..contact
            },
            _ => contact,
        };
        let changed = self
            .by_uuid
            .get(&contact.uuid)
            .is_none_or(|(old, _)| *old != contact);
        self.by_uuid.insert(contact.uuid, (contact, now));
        self.trim();
        changed
    }

    fn trim(&mut self) {
        while self.by_uuid.len() > MAX_CONTACTS {
            let oldest = self
                .by_uuid
                .iter()
                .min_by_key(|(_, (_, seen))| *seen)
                .map(|(id, _)| *id)
                .expect("not empty");
            self.by_uuid.remove(&oldest);
        }
    }

    /// Writes the file (owner-only, replaced atomically).
    pub fn save(&self) -> std::io::Result<()> {
        let mut entries: Vec<Entry> = self
            .by_uuid
            .values()
            .map(|(c, seen)| Entry {
                uuid: c.uuid,
                public_key: hex::encode(c.public_key),
                name: c.name.clone(),
                seen: *seen,
            })
            .collect();
        entries.sort_by_key(|e| e.uuid);
        let file = File {
            version: 1,
            contacts: entries,
        };
        let text = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
        let tmp = self.path.with_extension("json.tmp");
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            out.write_all(&text)?;
            out.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::identity::Identity;

    fn contact(seed: u8, name: Option<&str>) -> Contact {
        let id = Identity::from_secret([seed; 32]);
        Contact {
            uuid: id.uuid(),
            public_key: id.public_key(),
            name: name.map(str::to_owned),
        }
    }

    #[test]
    fn contacts_survive_a_restart_and_bad_entries_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut contacts = Contacts::load(dir.path());
        assert!(contacts.is_empty());
        assert!(contacts.remember(contact(1, Some("bob")), 10));
        assert!(
            !contacts.remember(contact(1, Some("bob")), 11),
            "nothing new"
        );
        assert!(
            !contacts.remember(contact(1, None), 12),
            "the last name is kept"
        );
        contacts.remember(contact(2, Some("Bob")), 13);
        contacts.save().unwrap();
        let mode = std::fs::metadata(dir.path().join(FILE)).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );

        let again = Contacts::load(dir.path());
        assert_eq!(again.len(), 2);
        assert_eq!(
            again.get(&contact(1, None).uuid).unwrap().name.as_deref(),
            Some("bob")
        );
        assert!(
            again.by_name("BOB").is_none(),
            "two contacts were called bob"
        );

        // An entry whose UUID is not its key's is dropped.
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        let forged = text.replacen(
            &contact(1, None).uuid.to_string(),
            &Uuid::nil().to_string(),
            1,
        );
        std::fs::write(dir.path().join(FILE), forged).unwrap();
        assert_eq!(Contacts::load(dir.path()).len(), 1);

        std::fs::write(dir.path().join(FILE), "{not json").unwrap();
        assert!(Contacts::load(dir.path()).is_empty());
        assert!(dir.path().join("contacts.json.bad").exists(), "set aside");
    }

    #[test]
    fn the_oldest_contacts_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut contacts = Contacts::load(dir.path());
        for i in 0..MAX_CONTACTS + 5 {
            let id = Identity::from_secret({
                let mut s = [0u8; 32];
                s[..8].copy_from_slice(&(i as u64).to_le_bytes());
                s
            });
            let c = Contact {
                uuid: id.uuid(),
                public_key: id.public_key(),
                name: None,
            };
            contacts.remember(c, i as u64);
        }
        assert_eq!(contacts.len(), MAX_CONTACTS);
    }
}
