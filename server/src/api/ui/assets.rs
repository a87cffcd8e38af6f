//! The console's static files, embedded in the binary (`include_bytes!`
//! of `server/assets/ui/`), and the content version that names them in
//! URLs. No build step: the files are served as committed.

use std::sync::LazyLock;

use sha2::{Digest, Sha256};

/// One embedded file, served as `/ui/assets/<version>/<name>`.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/ui/", $name)),
        }
    };
}

/// Every asset. The modules import each other by relative name, so they
/// live flat in one versioned directory.
pub const ASSETS: &[Asset] = &[
    asset!("app.css", CSS),
    asset!("icon.svg", SVG),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("format.js", JS),
    asset!("json.js", JS),
    asset!("metrics.js", JS),
    asset!("message-view.js", JS),
    asset!("page-overview.js", JS),
    asset!("page-topic.js", JS),
    asset!("page-messages.js", JS),
    asset!("page-subscription.js", JS),
    asset!("page-dead-letters.js", JS),
];

/// The page template; `%VERSION%` becomes [`version`].
const INDEX_TEMPLATE: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/ui/index.html"));

/// A digest of every asset's name and bytes: asset URLs change whenever
/// any file does, so they can be cached forever, and a page never mixes
/// files of two builds.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut hash = Sha256::new();
    for asset in ASSETS {
        hash.update(asset.name.as_bytes());
        hash.update([0]);
        hash.update((asset.body.len() as u64).to_be_bytes());
        hash.update(asset.body);
    }
    hash.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
});

static INDEX: LazyLock<String> = LazyLock::new(|| INDEX_TEMPLATE.replace("%VERSION%", version()));

/// The content version in asset URLs.
pub fn version() -> &'static str {
    &VERSION
}

/// The index page with its asset URLs.
pub fn index() -> &'static str {
    &INDEX
}

/// The asset called `name`.
pub fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}
