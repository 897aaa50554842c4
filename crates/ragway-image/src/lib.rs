//! Reproducible OCI images assembled from files on disk and pushed over the OCI distribution
//! API, with no Docker daemon: `build` writes the layers, config and manifest into a folder
//! (an OCI image layout), `push` sends what the registry lacks, `manifest_digest` asks a
//! registry what a tag points to, and `shared_libraries` lists what a dynamically linked
//! binary needs on a `scratch` base.

mod error;
mod image;
mod layer;
mod libs;
mod registry;

pub use error::{ImageError, Result};
pub use image::{
    Blob, BuiltImage, CONFIG_MEDIA_TYPE, ImageFile, ImageSpec, LAYER_MEDIA_TYPE, LayerSpec,
    MANIFEST_MEDIA_TYPE, build,
};
pub use libs::shared_libraries;
pub use registry::{PushReport, Target, manifest_digest, push};
