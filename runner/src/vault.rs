//! Opening sealed values where a step or check runs: the namespace's keyring, read from a
//! file (`--vault-key`) or, in a step or check pod, from `SYNQX_VAULT_KEYRING` (the kubelet
//! fills it from the namespace's `synqx-vault` Secret; the pod's service account cannot
//! read that Secret).
//! A value is opened when a connector resolves its field, right before connecting, and the
//! opened copy is wiped when dropped.

use std::path::Path;

use synqx_api::vault::{Binding, Keyring, VaultError, Zeroizing};

use crate::error::{Error, Result};

/// The environment variable that carries a pod's keyring (set by the operator only in pods
/// whose Connections hold sealed values).
pub const KEYRING_ENV: &str = "SYNQX_VAULT_KEYRING";
/// The environment variable that names a pod's namespace (downward API).
pub const NAMESPACE_ENV: &str = "POD_NAMESPACE";

/// A keyring and the namespace whose Connections it opens.
pub struct Vault {
    keyring: Keyring,
    namespace: String,
    source: String,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("namespace", &self.namespace)
            .field("source", &self.source)
            .field("keys", &self.keyring.ids())
            .finish()
    }
}

impl Vault {
    pub fn new(keyring: Keyring, namespace: impl Into<String>, source: impl Into<String>) -> Self {
        Self {
            keyring,
            namespace: namespace.into(),
            source: source.into(),
        }
    }

    /// Reads a keyring file.
    pub fn from_file(path: &Path, namespace: impl Into<String>) -> Result<Self> {
        let keyring = read_keyring(path)?;
        Ok(Self::new(keyring, namespace, path.display().to_string()))
    }

    /// The keyring a pod was given in [`KEYRING_ENV`], for the pod's namespace.
    pub fn from_pod_env(text: &str, namespace: Option<&str>) -> Result<Self> {
        let Some(namespace) = namespace.filter(|n| !n.is_empty()) else {
            return Err(Error::Config(format!(
                "{KEYRING_ENV} is set but {NAMESPACE_ENV} is not: sealed values open only for the namespace they were sealed for (the operator sets both)"
            )));
        };
        let keyring = Keyring::from_text(&format!("${KEYRING_ENV}"), text)?;
        Ok(Self::new(
            keyring,
            namespace,
            format!("Secret {namespace}/synqx-vault"),
        ))
    }

    /// The namespace whose sealed values this vault opens.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Opens the sealed value of one field of a Connection of this namespace.
    pub fn open(
        &self,
        connection: &str,
        field: &str,
        sealed: &str,
    ) -> std::result::Result<Zeroizing<String>, VaultError> {
        self.keyring
            .open(&Binding::new(&self.namespace, connection, field), sealed)
    }
}

/// Reads a keyring file; errors name the file.
pub fn read_keyring(path: &Path) -> Result<Keyring> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading the vault keyring {}", path.display()), e))?,
    );
    Ok(Keyring::from_text(&path.display().to_string(), &text)?)
}
