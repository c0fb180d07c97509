//! The raw documents of a parameters file, as serde reads them (every scalar with its
//! position): the reference's `image_data:` and the native `images:`.
use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

pub(crate) type S = Spanned<String>;

/// A list: a YAML sequence, a Python list repr (`"['gzip', 'vim']"`), or a comma list.
#[derive(Debug, Default, Clone)]
pub(crate) struct PyList(pub(crate) Vec<String>);

impl<'de> Deserialize<'de> for PyList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PyList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list such as ['gzip', 'vim'] or [gzip, vim]")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<PyList, E> {
                crate::yaml::py_list(&yaml_serde::Value::String(v.to_string()))
                    .map(PyList)
                    .ok_or_else(|| E::custom("not a list"))
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<PyList, E> {
                Ok(PyList::default())
            }
            fn visit_none<E: de::Error>(self) -> std::result::Result<PyList, E> {
                Ok(PyList::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<PyList, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(PyList(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefDoc {
    pub(crate) image_data: Spanned<RefImage>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefImage {
    pub(crate) name: Option<S>,
    pub(crate) image_class: Option<S>,
    pub(crate) password: Option<S>,
    pub(crate) kernel: Option<S>,
    pub(crate) livenet_type: Option<S>,
    pub(crate) livenet_size: Option<S>,
    pub(crate) ssh_pub_key: Option<S>,
    pub(crate) selinux: Option<S>,
    pub(crate) optimize: Option<S>,
    /// Not the reference's: `transient: True` marks a per-host image for `gc`.
    pub(crate) transient: Option<S>,
    pub(crate) additional_packages: Option<Spanned<PyList>>,
    pub(crate) release_version: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NativeDoc {
    pub(crate) version: Option<S>,
    pub(crate) defaults: Option<Spanned<NativeImage>>,
    pub(crate) images: Spanned<Vec<Spanned<NativeImage>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NativeImage {
    pub(crate) name: Option<S>,
    pub(crate) kind: Option<S>,
    pub(crate) distro: Option<S>,
    pub(crate) release: Option<S>,
    #[serde(rename = "type")]
    pub(crate) livenet_type: Option<S>,
    pub(crate) layout: Option<S>,
    pub(crate) size: Option<S>,
    pub(crate) password: Option<S>,
    pub(crate) password_hash: Option<S>,
    pub(crate) ssh_pub_key: Option<S>,
    pub(crate) selinux: Option<S>,
    pub(crate) optimize: Option<S>,
    pub(crate) transient: Option<S>,
    pub(crate) packages: Option<Spanned<PyList>>,
    pub(crate) mirror: Option<S>,
    pub(crate) initramfs: Option<S>,
    pub(crate) kernel: Option<S>,
    pub(crate) from: Option<S>,
    pub(crate) nodes: Option<S>,
}
