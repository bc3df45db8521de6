//! Encapsulated PDF reports under `typical`: kept, but password protected.
//!
//! A PDF's text cannot be anonymized reliably, so `typical` encrypts it (AES-256,
//! PDF 2.0 security handler R6) and `strict` discards it. The password follows the
//! clinic's policy: a random one per study, recorded in the data dir for the clinic
//! (never logged), or the patient's birth date (YYYYMMDD), which the patient knows
//! and the clinic can tell without a lookup but which is far easier to guess.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use lopdf::encryption::crypt_filters::{Aes256CryptFilter, CryptFilter};
use lopdf::{Document, EncryptionState, EncryptionVersion, Object, Permissions, StringFormat};

use crate::config::DocumentPassword;

/// Documents larger than this are held back rather than read into memory.
pub const DOCUMENT_LIMIT: u32 = 16 * 1024 * 1024;

const BOOK_FILE: &str = "document-passwords.tsv";

/// Encrypts `pdf` so that it opens only with `password`.
pub fn protect(pdf: &[u8], password: &str) -> Result<Vec<u8>, String> {
    let mut document = Document::load_mem(pdf).map_err(|e| format!("not a readable PDF: {e}"))?;
    if document.is_encrypted() {
        return Err("the PDF is already encrypted with a password we do not know".into());
    }
    if document.trailer.get(b"ID").is_err() {
        // An encrypted PDF must carry a file identifier (ISO 32000 14.4).
        let id = random_bytes::<16>().map_err(|e| e.to_string())?.to_vec();
        let string = || Object::String(id.clone(), StringFormat::Hexadecimal);
        document
            .trailer
            .set("ID", Object::Array(vec![string(), string()]));
    }
    let file_key = random_bytes::<32>().map_err(|e| e.to_string())?;
    let owner_password = random_password().map_err(|e| e.to_string())?;
    let filter: Arc<dyn CryptFilter> = Arc::new(Aes256CryptFilter);
    let version = EncryptionVersion::V5 {
        encrypt_metadata: true,
        crypt_filters: BTreeMap::from([(b"StdCF".to_vec(), filter)]),
        file_encryption_key: &file_key,
        stream_filter: b"StdCF".to_vec(),
        string_filter: b"StdCF".to_vec(),
        owner_password: &owner_password,
        user_password: password,
        permissions: Permissions::all(),
    };
    let state =
        EncryptionState::try_from(version).map_err(|e| format!("cannot set up encryption: {e}"))?;
    document
        .encrypt(&state)
        .map_err(|e| format!("cannot encrypt the PDF: {e}"))?;
    let mut out = Vec::with_capacity(pdf.len() + 4096);
    document
        .save_to(&mut out)
        .map_err(|e| format!("cannot write the PDF: {e}"))?;
    Ok(out)
}

/// The per-study passwords given out so far, kept in the data dir (mode 0600):
/// one line per study, `original study UID`, `anonymized study UID`, `password`.
pub struct PasswordBook {
    path: PathBuf,
    lock: Mutex<()>,
}

impl PasswordBook {
    pub fn new(data_dir: &Path) -> PasswordBook {
        PasswordBook {
            path: data_dir.join(BOOK_FILE),
            lock: Mutex::new(()),
        }
    }

    /// The password for a study: the one given before, or a new one, recorded.
    pub fn for_study(&self, study_uid: &str, anonymized_study_uid: &str) -> io::Result<String> {
        let _guard = self.lock.lock().expect("password book lock");
        let book = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        if let Some(password) = book.lines().find_map(|line| {
            let mut fields = line.split('\t');
            (fields.next() == Some(study_uid))
                .then(|| fields.nth(1))
                .flatten()
        }) {
            return Ok(password.to_owned());
        }
        let password = random_password()?;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?;
        file.write_all(format!("{study_uid}\t{anonymized_study_uid}\t{password}\n").as_bytes())?;
        file.sync_all()?;
        Ok(password)
    }
}

/// The password for a document, by policy.
pub fn password(
    policy: DocumentPassword,
    book: &PasswordBook,
    study_uid: Option<&str>,
    anonymized_study_uid: Option<&str>,
    birth_date: Option<&str>,
) -> Result<String, String> {
    match policy {
        DocumentPassword::PerStudy => {
            let (Some(study), Some(anonymized)) = (study_uid, anonymized_study_uid) else {
                return Err("no Study Instance UID to file the document's password under".into());
            };
            book.for_study(study, anonymized)
                .map_err(|e| format!("cannot record the password: {e}"))
        }
        DocumentPassword::BirthDate => match birth_date {
            Some(date) if date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()) => {
                Ok(date.to_owned())
            }
            _ => Err("no Patient's Birth Date to use as the document's password".into()),
        },
    }
}

fn random_bytes<const N: usize>() -> io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(io::Error::other)?;
    Ok(bytes)
}

/// 16 characters from an alphabet without look-alikes (about 90 bits).
fn random_password() -> io::Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzACDEFGHJKLMNPQRTUVWXYZ2346789";
    Ok(random_bytes::<16>()?
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal one-page PDF with a line of text.
    pub fn sample_pdf(text: &str) -> Vec<u8> {
        use lopdf::{Object, Stream, dictionary};
        let mut doc = Document::with_version("1.7");
        let pages_id = doc.new_object_id();
        let font_id = doc.add_object(
            dictionary! {"Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica"},
        );
        let content = format!("BT /F1 12 Tf 72 720 Td ({text}) Tj ET");
        let content_id = doc.add_object(Stream::new(dictionary! {}, content.into_bytes()));
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
            "Resources" => dictionary! {"Font" => dictionary! {"F1" => font_id}},
            "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
        });
        doc.objects.insert(
            pages_id,
            Object::Dictionary(
                dictionary! {"Type" => "Pages", "Kids" => vec![page_id.into()], "Count" => 1},
            ),
        );
        let catalog_id = doc.add_object(dictionary! {"Type" => "Catalog", "Pages" => pages_id});
        doc.trailer.set("Root", catalog_id);
        let mut out = Vec::new();
        doc.save_to(&mut out).unwrap();
        out
    }

    #[test]
    fn protected_pdfs_open_only_with_the_password() {
        let pdf = sample_pdf("ZQX report of DOE JANE");
        let protected = protect(&pdf, "s3cret").unwrap();
        assert!(
            !protected.windows(3).any(|w| w == b"ZQX"),
            "text is encrypted"
        );
        let mut opened = Document::load_mem(&protected).unwrap();
        assert!(opened.is_encrypted());
        assert!(opened.decrypt("wrong").is_err());
        opened.decrypt("s3cret").unwrap();
        assert!(protect(b"not a pdf", "x").is_err());
    }

    #[test]
    fn one_password_per_study_kept_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let book = PasswordBook::new(dir.path());
        let a = book.for_study("1.2.3", "2.25.1").unwrap();
        assert_eq!(a, book.for_study("1.2.3", "2.25.1").unwrap());
        assert_ne!(a, book.for_study("1.2.4", "2.25.2").unwrap());
        assert_eq!(a.len(), 16);
        let mode = fs::metadata(dir.path().join(BOOK_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0);
        let birth = password(
            DocumentPassword::BirthDate,
            &book,
            None,
            None,
            Some("19930512"),
        )
        .unwrap();
        assert_eq!(birth, "19930512");
        assert!(password(DocumentPassword::BirthDate, &book, None, None, None).is_err());
    }
}
