//! Name validation, the same rule for images, nodes and kernels.
use crate::error::{Error, Result};

pub const NAME_RULE: &str =
    "use letters, digits, '-', '_' and '.', not starting with '.', at most 64 characters";

/// Validates an image, node or kernel name. `kind` names what is checked in the error.
pub fn validate(kind: &'static str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName {
            kind,
            name: name.to_string(),
            rule: NAME_RULE,
        })
    }
}

pub fn image(name: &str) -> Result<()> {
    validate("image", name)
}

pub fn node(name: &str) -> Result<()> {
    validate("node", name)
}

pub fn kernel(name: &str) -> Result<()> {
    validate("kernel", name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_good_names() {
        for n in [
            "a",
            "img-1",
            "Rocky_9.3",
            "x".repeat(64).as_str(),
            "6.1.0-27-amd64",
        ] {
            assert!(validate("image", n).is_ok(), "{n}");
        }
    }

    #[test]
    fn refuses_bad_names() {
        for n in [
            "",
            ".hidden",
            "a/b",
            "..",
            "a b",
            "é",
            "x".repeat(65).as_str(),
            "a;rm -rf",
            "a\nb",
        ] {
            let e = validate("image", n).unwrap_err().to_string();
            assert!(e.contains("at most 64"), "{e}");
        }
    }
}
