//! A wasm component artifact's manifest: what the host reads of it (the config's media type and
//! the one layer's descriptor) and the checks it must pass, the same for a manifest fresh from
//! the registry and for the local copy of one.

use super::{RegistryError, WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE, shorten};
use crate::config::reference::is_sha256_digest;
use serde::Deserialize;

/// The manifest media types the host asks for: an OCI image manifest, or Docker's v2 schema 2
/// (the same JSON shape).
pub const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
/// Largest manifest read: the size the distribution spec asks registries to accept. A wasm
/// artifact's manifest is well under 1 KiB.
pub const MAX_BYTES: u64 = 4 << 20;

/// The parts of an image manifest the host reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    /// Only an image index has this.
    manifests: Option<serde::de::IgnoredAny>,
}

/// What a manifest says of a blob.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// `application/wasm` for the component layer.
    pub media_type: String,
    /// `sha256:…`.
    pub digest: String,
    /// Bytes.
    pub size: u64,
}

/// The component layer of the manifest `bytes`, if it is a wasm component artifact whose layer
/// is at most `max_bytes`; otherwise a [`RegistryError::NotWasm`] or
/// [`RegistryError::TooLarge`] naming `reference`.
pub fn component_layer(
    bytes: &[u8],
    reference: &str,
    max_bytes: u64,
) -> Result<Descriptor, RegistryError> {
    let not_wasm = |detail: String| RegistryError::NotWasm {
        reference: reference.to_string(),
        detail,
    };
    let manifest: Manifest = serde_json::from_slice(bytes)
        .map_err(|e| not_wasm(format!("its manifest is not an image manifest: {e}")))?;
    let is_index = manifest.manifests.is_some()
        || manifest
            .media_type
            .as_deref()
            .is_some_and(|t| t.contains("index") || t.contains("manifest.list"));
    if is_index {
        return Err(not_wasm(
            "it is an image index (a list of manifests), not an image manifest".into(),
        ));
    }
    let (Some(config), Some(layers)) = (manifest.config, manifest.layers) else {
        return Err(not_wasm(
            "its manifest has no config or no layers; it is not an image manifest".into(),
        ));
    };
    if config.media_type != WASM_CONFIG_MEDIA_TYPE {
        return Err(not_wasm(format!(
            "its config media type is `{}`, not `{WASM_CONFIG_MEDIA_TYPE}`",
            shorten(&config.media_type)
        )));
    }
    let layer = match <[Descriptor; 1]>::try_from(layers) {
        Ok([layer]) if layer.media_type == WASM_LAYER_MEDIA_TYPE => layer,
        Ok([layer]) => {
            return Err(not_wasm(format!(
                "its layer's media type is `{}`, not `{WASM_LAYER_MEDIA_TYPE}`",
                shorten(&layer.media_type)
            )));
        }
        Err(layers) => {
            return Err(not_wasm(format!(
                "it has {} layers; a component artifact has one",
                layers.len()
            )));
        }
    };
    if !is_sha256_digest(&layer.digest) {
        return Err(not_wasm(format!(
            "its layer's digest `{}` is not `sha256:` and 64 lower-case hex digits",
            shorten(&layer.digest)
        )));
    }
    if layer.size > max_bytes {
        return Err(RegistryError::TooLarge {
            reference: reference.to_string(),
            what: "layer",
            detail: format!(
                "its descriptor says {} bytes, more than the {max_bytes} byte limit \
                 (`--max-component-size`)",
                layer.size
            ),
        });
    }
    Ok(layer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(config: &str, layers: &[(&str, &str, u64)]) -> Vec<u8> {
        let layers: Vec<serde_json::Value> = layers
            .iter()
            .map(|(t, d, s)| serde_json::json!({"mediaType": t, "digest": d, "size": s}))
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": config, "digest": format!("sha256:{}", "0".repeat(64)), "size": 2},
            "layers": layers,
        }))
        .unwrap()
    }

    #[test]
    fn a_component_artifact_gives_its_layer_and_anything_else_is_named() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let check = |bytes: &[u8], max: u64| component_layer(bytes, "oci://r/a:v1", max);
        let good = manifest(
            WASM_CONFIG_MEDIA_TYPE,
            &[(WASM_LAYER_MEDIA_TYPE, &digest, 100)],
        );
        let layer = check(&good, 100).unwrap();
        assert_eq!((layer.digest.as_str(), layer.size), (digest.as_str(), 100));

        let err = |bytes: &[u8], max: u64| check(bytes, max).unwrap_err();
        let too_large = err(&good, 99);
        assert_eq!(too_large.kind(), "too_large");
        assert!(
            too_large
                .to_string()
                .contains("more than the 99 byte limit"),
            "{too_large}"
        );
        let image = manifest("application/vnd.oci.image.config.v1+json", &[]);
        assert!(err(&image, 100).to_string().contains("config media type"));
        let two = manifest(
            WASM_CONFIG_MEDIA_TYPE,
            &[
                (WASM_LAYER_MEDIA_TYPE, &digest, 1),
                (WASM_LAYER_MEDIA_TYPE, &digest, 1),
            ],
        );
        assert!(err(&two, 100).to_string().contains("2 layers"));
        let tar = manifest(WASM_CONFIG_MEDIA_TYPE, &[("application/x-tar", &digest, 1)]);
        assert!(err(&tar, 100).to_string().contains("`application/x-tar`"));
        let sneaky = manifest(
            WASM_CONFIG_MEDIA_TYPE,
            &[(WASM_LAYER_MEDIA_TYPE, "sha256:../../etc/passwd", 1)],
        );
        assert!(err(&sneaky, 100).to_string().contains("64 lower-case hex"));
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(err(index, 100).to_string().contains("image index"));
        assert_eq!(err(b"not json", 100).kind(), "not_wasm");
        let negative = String::from_utf8(good.clone())
            .unwrap()
            .replace("\"size\":100", "\"size\":-1");
        assert_eq!(err(negative.as_bytes(), 100).kind(), "not_wasm");
    }
}
