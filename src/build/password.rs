//! Root password: SHA-512 crypt hashes (`$6$<16-char salt>$<86 chars>`), the format
//! `/etc/shadow`, PAM and the reference's `image_data.yml` use. The clear password is
//! only ever held in memory: never logged, never put on a command line.
use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sha_crypt::{PasswordHasher, ShaCrypt};

use crate::error::{Error, IoContext, Result};

/// Salt bytes: 12 random bytes are 16 characters of crypt base64, the longest salt
/// SHA-crypt uses (a longer one is truncated by the algorithm and refused by some PAMs).
const SALT_BYTES: usize = 12;

/// Hashes a clear password with SHA-512 crypt and a random 16-character salt.
///
/// sha-crypt 0.6 always writes the rounds parameter (`$6$rounds=5000$salt$hash`); 5000 is
/// the algorithm's default, for which the hash is the same with or without the
/// parameter, so it is dropped to give the classic `$6$salt$hash` every libcrypt and the
/// reference write.
pub fn hash_password(clear: &str) -> Result<String> {
    if clear.is_empty() {
        return Err(Error::invalid(
            "the root password is empty: give a non-empty password (or none at all to lock root)",
        ));
    }
    let mut salt = [0u8; SALT_BYTES];
    getrandom::fill(&mut salt)
        .map_err(|e| Error::invalid(format!("cannot get random bytes for the salt: {e}")))?;
    hash_with_salt(clear, &salt)
}

fn hash_with_salt(clear: &str, salt: &[u8; SALT_BYTES]) -> Result<String> {
    let h = ShaCrypt::SHA512
        .hash_password_with_salt(clear.as_bytes(), salt)
        .map_err(|e| Error::invalid(format!("cannot hash the password: {e}")))?;
    let s = h.as_str();
    let s = s
        .strip_prefix("$6$rounds=5000$")
        .map(|rest| format!("$6${rest}"))
        .unwrap_or_else(|| s.to_string());
    check_hash(&s)?;
    Ok(s)
}

/// Does `clear` match the crypt(3) SHA-512 `hash` (e.g. a record's stored hash)?
/// Anything that is not a SHA-512 crypt hash never matches.
pub fn verify_password(clear: &str, hash: &str) -> bool {
    use sha_crypt::PasswordVerifier;
    hash.starts_with("$6$")
        && ShaCrypt::SHA512
            .verify_password(clear.as_bytes(), hash)
            .is_ok()
}

/// Checks a stored hash is a crypt(3) string that is safe to put in `/etc/shadow`:
/// `$id$...`, no `:` and no whitespace. SHA-512 hashes must have a 16-char salt and an
/// 86-char digest.
pub fn check_hash(h: &str) -> Result<()> {
    let bad = |why: &str| {
        Error::invalid(format!(
            "the password hash is not valid ({why}): give a crypt(3) hash such as the one `openssl passwd -6` prints"
        ))
    };
    if !h.starts_with('$')
        || h.contains(':')
        || h.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad("it must start with $ and hold no ':' or whitespace"));
    }
    if let Some(rest) = h.strip_prefix("$6$") {
        let fields: Vec<&str> = rest.split('$').collect();
        let (salt, digest) = match fields.as_slice() {
            [salt, digest] => (*salt, *digest),
            [rounds, salt, digest] if rounds.starts_with("rounds=") => (*salt, *digest),
            _ => return Err(bad("a SHA-512 hash is $6$salt$digest")),
        };
        if salt.is_empty() || salt.len() > 16 {
            return Err(bad("the salt must have 1 to 16 characters"));
        }
        if digest.len() != 86 {
            return Err(bad("a SHA-512 digest has 86 characters"));
        }
    }
    Ok(())
}

/// The password in a file: its first line, the line end stripped. Refuses an empty one;
/// warns when the file is readable by group or others.
pub fn read_password_file(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path).at(path)?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            "password file {} is readable by group or others (mode {:o}): chmod 600 it",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
    let f = std::fs::File::open(path).at(path)?;
    first_line(std::io::BufReader::new(f), &path.display().to_string())
}

/// The password from stdin (its first line), for `echo ... |` and files redirected in.
pub fn read_password_stdin() -> Result<String> {
    first_line(std::io::stdin().lock(), "stdin")
}

/// The first line of a reader, without its line end; an empty one is refused.
pub fn first_line(mut r: impl BufRead, what: &str) -> Result<String> {
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| Error::io(what, e))?;
    let pw = line.trim_end_matches(['\n', '\r']).to_string();
    if pw.is_empty() {
        return Err(Error::invalid(format!(
            "the password read from {what} is empty: put the password on its first line"
        )));
    }
    Ok(pw)
}

/// The root password hash from `--password-file F` or `--password-stdin` (None when
/// neither is given). The clear text lives only inside this call.
pub fn hash_from_source(file: Option<&Path>, stdin: bool) -> Result<Option<String>> {
    let clear = match (file, stdin) {
        (Some(f), _) => Some(read_password_file(f)?),
        (None, true) => Some(read_password_stdin()?),
        (None, false) => None,
    };
    clear.map(|c| hash_password(&c)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_against_a_stored_hash() {
        let h = hash_password("pw-1").unwrap();
        assert!(verify_password("pw-1", &h));
        assert!(!verify_password("pw-2", &h));
        assert!(!verify_password("pw-1", "not a hash"));
    }
    use std::ffi::{CStr, CString};

    #[link(name = "crypt")]
    extern "C" {
        fn crypt(key: *const libc::c_char, salt: *const libc::c_char) -> *mut libc::c_char;
    }

    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// The system's libcrypt (what PAM uses): crypt(password, stored) == stored.
    pub(crate) fn libcrypt_verifies(password: &str, stored: &str) -> bool {
        let k = CString::new(password).unwrap();
        let s = CString::new(stored).unwrap();
        // SAFETY: both pointers are valid NUL-terminated strings for the call; crypt
        // returns a pointer to a static buffer (or NULL) that is copied before returning.
        // Tests call it from one thread at a time under LOCK.
        let _g = LOCK.lock().unwrap();
        let out = unsafe { crypt(k.as_ptr(), s.as_ptr()) };
        if out.is_null() {
            return false;
        }
        // SAFETY: non-null result of crypt is a NUL-terminated string.
        let got = unsafe { CStr::from_ptr(out) }
            .to_string_lossy()
            .into_owned();
        got == stored
    }

    #[test]
    fn format_is_classic_sha512_crypt() {
        let h = hash_password("s3cret pass").unwrap();
        let parts: Vec<&str> = h.split('$').collect();
        assert_eq!(parts.len(), 4, "{h}");
        assert_eq!(parts[1], "6");
        assert_eq!(parts[2].len(), 16, "salt length: {h}");
        assert_eq!(parts[3].len(), 86, "digest length: {h}");
        assert!(!h.contains("rounds="));
        check_hash(&h).unwrap();
        // random salts
        assert_ne!(h, hash_password("s3cret pass").unwrap());
    }

    #[test]
    fn system_libcrypt_verifies() {
        for pw in ["root", "s3cret pass", "ünïcødé:$x", &"long".repeat(40)] {
            let h = hash_password(pw).unwrap();
            assert!(libcrypt_verifies(pw, &h), "{pw} {h}");
            assert!(!libcrypt_verifies("wrong", &h));
        }
    }

    #[test]
    fn same_as_libcrypt_for_a_fixed_salt() {
        // Without the `rounds=5000$` part the digest must be libcrypt's own for that salt.
        let h = hash_with_salt("password", &[7u8; SALT_BYTES]).unwrap();
        let setting: String = h.split('$').take(3).collect::<Vec<_>>().join("$");
        let k = CString::new("password").unwrap();
        let s = CString::new(setting).unwrap();
        let _g = LOCK.lock().unwrap();
        // SAFETY: valid C strings; the static result is copied at once.
        let out = unsafe { CStr::from_ptr(crypt(k.as_ptr(), s.as_ptr())) }
            .to_string_lossy()
            .into_owned();
        assert_eq!(out, h);
    }

    #[test]
    fn empty_and_bad() {
        assert!(hash_password("").is_err());
        assert!(check_hash("$6$abc:def$x").is_err());
        assert!(check_hash("plain").is_err());
        assert!(check_hash("$6$waytoolongsaltvalue22$x").is_err());
    }

    #[test]
    fn password_file_first_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pw");
        std::fs::write(&p, "hunter2\r\nsecond line\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_password_file(&p).unwrap(), "hunter2");
        std::fs::write(&p, "\n").unwrap();
        let e = read_password_file(&p).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        let e = read_password_file(&d.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
        assert_eq!(first_line(std::io::Cursor::new("abc"), "x").unwrap(), "abc");
    }
}
