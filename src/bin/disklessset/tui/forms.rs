//! The concrete forms. Each is data: fields, their validators (the core's own checks),
//! the recap sentence, and the action the values become.
//!
//! The livenet create form, once `livenet create` is in the core, is one more function
//! here: name (image name), distro and type (Choice), release (Text), layout (Choice),
//! size (Size), password + confirmation (Password, Confirm), ssh key path (Text), packages.
use super::app::Action;
use super::form::{FieldKind, FieldSpec, FormSpec};

fn image_name(s: &str) -> Result<(), String> {
    disklessset::names::image(s).map_err(|e| e.to_string())
}

fn message(s: &str) -> Result<(), String> {
    if s.contains('\0') {
        Err("must not contain NUL bytes".into())
    } else {
        Ok(())
    }
}

/// `demo create NAME --message TEXT`.
pub fn demo_create() -> FormSpec {
    FormSpec {
        title: "Create a demo image".into(),
        recap: |v| format!("Create demo image {}", v.get("name")),
        fields: vec![
            FieldSpec::text("name", "Image name", image_name)
                .help("Letters, digits, '-', '_' and '.'; at most 64 characters."),
            FieldSpec::text("message", "Message", message)
                .default("hello from disklessset")
                .help("The text the demo image holds (demo.txt)."),
        ],
        submit: |v| Action::DemoCreate {
            name: v.get("name").to_string(),
            message: v.get("message").to_string(),
        },
    }
}

/// `clone SRC DST`.
pub fn clone(src: &str) -> FormSpec {
    FormSpec {
        title: format!("Clone image {src}"),
        recap: |v| format!("Clone image {} into {}", v.get("src"), v.get("name")),
        fields: vec![
            FieldSpec::text("name", "New image name", image_name)
                .help("Letters, digits, '-', '_' and '.'; at most 64 characters."),
            FieldSpec {
                key: "src",
                label: "Source",
                kind: FieldKind::Choice(vec![src.to_string()]),
                default: src.to_string(),
                help: "The image to copy (pick another one in the images list).",
            },
        ],
        submit: |v| Action::Clone {
            src: v.get("src").to_string(),
            dst: v.get("name").to_string(),
        },
    }
}
