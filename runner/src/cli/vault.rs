//! `synqx seal` and `synqx vault …`: seal values with a namespace's public key, and keep
//! keyrings, in a file or in the cluster's `synqx-vault` Secret.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use synqx_api::validate::{InputFile, validate};
use synqx_api::vault::{
    Binding, KEYRING_SECRET_KEY, Keyring, PUBLIC_KEY_CONFIG_KEY, PublicKey, SEALABLE_FIELDS,
    VAULT_OBJECT_NAME, Zeroizing, seal,
};

use super::files::read_all;

/// Where a keyring is kept.
pub enum KeyringSource {
    /// A keyring file (`--vault-key`).
    File(PathBuf),
    /// The `synqx-vault` Secret of a namespace.
    Cluster(String),
}

/// `synqx seal`: the value on standard input, sealed for one field of one Connection.
pub fn seal_stdin(
    namespace: &str,
    connection: &str,
    field: &str,
    public_key: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    if !SEALABLE_FIELDS.contains(&field) {
        bail!(
            "--field {field}: not a secret field of a Connection (fields: {})",
            SEALABLE_FIELDS.join(", ")
        );
    }
    let public = match public_key {
        Some(path) => read_public_key(path)?,
        None => runtime()?.block_on(cluster_public_key(namespace))?,
    };
    let mut input = Zeroizing::new(Vec::new());
    std::io::stdin()
        .read_to_end(&mut input)
        .context("reading the value to seal from standard input")?;
    // `echo` and here-strings add one line break; a value never ends with one.
    let mut value: &[u8] = &input;
    value = value.strip_suffix(b"\n").unwrap_or(value);
    value = value.strip_suffix(b"\r").unwrap_or(value);
    let binding = Binding::new(namespace, connection, field);
    println!("{}", seal(&public, &binding, value)?);
    Ok(ExitCode::SUCCESS)
}

/// `synqx vault keygen --out FILE`: a new keyring file (never overwriting one); prints its
/// public key.
pub fn keygen(out: &Path) -> anyhow::Result<ExitCode> {
    let keyring = Keyring::generate(&now())?;
    write_private(out, &keyring.to_text(), true)?;
    eprintln!(
        "wrote the vault keyring {} (private: keep it out of Git); its public key:",
        out.display()
    );
    println!("{}", keyring.newest().public_key().to_line());
    Ok(ExitCode::SUCCESS)
}

/// `synqx vault pubkey`: the public key that seals, from a keyring file or the cluster.
pub fn pubkey(source: &KeyringSource) -> anyhow::Result<ExitCode> {
    let line = match source {
        KeyringSource::File(path) => read_keyring(path)?.newest().public_key().to_line(),
        KeyringSource::Cluster(namespace) => runtime()?
            .block_on(cluster_public_key(namespace))?
            .to_line(),
    };
    println!("{line}");
    Ok(ExitCode::SUCCESS)
}

/// `synqx vault rotate`: adds a key that seals from now on; old values still open.
pub fn rotate(source: &KeyringSource) -> anyhow::Result<ExitCode> {
    let (id, held) = match source {
        KeyringSource::File(path) => {
            let mut keyring = read_keyring(path)?;
            let id = keyring.rotate(&now())?.id().to_string();
            write_private(path, &keyring.to_text(), false)?;
            (id, keyring.ids())
        }
        KeyringSource::Cluster(namespace) => runtime()?.block_on(rotate_in_cluster(namespace))?,
    };
    eprintln!(
        "added vault key \"{id}\" (keys: {held}); new seals use it. Run `synqx vault reseal` on your files to move old values to it"
    );
    Ok(ExitCode::SUCCESS)
}

/// `synqx vault reseal FILES…`: rewrites every sealed value of the files with the newest key,
/// changing nothing else in them.
pub fn reseal(
    source: &KeyringSource,
    default_namespace: &str,
    paths: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let keyring = match source {
        KeyringSource::File(path) => read_keyring(path)?,
        KeyringSource::Cluster(namespace) => runtime()?.block_on(cluster_keyring(namespace))?,
    };
    let (texts, problems) = read_all(paths);
    if let Some(problem) = problems.first() {
        bail!("{problem}");
    }
    let newest = keyring.newest().id().to_string();
    let mut failed = 0usize;
    for (file, text) in &texts {
        let report = validate(&[InputFile { name: file, text }]);
        let mut updated = text.clone();
        let (mut resealed, mut current) = (0usize, 0usize);
        for doc in &report.bundle.connections {
            let connection = &doc.object;
            let name = connection.metadata.name.as_deref().unwrap_or_default();
            let namespace = connection
                .metadata
                .namespace
                .as_deref()
                .unwrap_or(default_namespace);
            for (field, value) in connection.spec.secret_values() {
                let Some(old) = value.sealed.as_deref() else {
                    continue;
                };
                let binding = Binding::new(namespace, name, field);
                match keyring.reseal(&binding, old) {
                    Ok(new) if new == old.trim() => current += 1,
                    Ok(new) => {
                        updated = updated.replacen(old.trim(), &new, 1);
                        resealed += 1;
                    }
                    Err(e) => {
                        eprintln!("{file}: {e}");
                        failed += 1;
                    }
                }
            }
        }
        if resealed > 0 {
            write_replacing(Path::new(file), &updated)?;
        }
        println!(
            "{file}: {resealed} resealed with vault key \"{newest}\", {current} already sealed with it"
        );
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("{failed} sealed values could not be opened; they were left as they were");
        ExitCode::FAILURE
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn read_public_key(path: &Path) -> anyhow::Result<PublicKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the vault public key {}", path.display()))?;
    Ok(PublicKey::parse(&path.display().to_string(), &text)?)
}

fn read_keyring(path: &Path) -> anyhow::Result<Keyring> {
    Ok(synqx_runner::vault::read_keyring(path)?)
}

/// Writes a private file readable by its owner only: `create_new` refuses to replace one,
/// otherwise it is replaced atomically.
fn write_private(path: &Path, text: &str, create_new: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let target = if create_new {
        path.to_path_buf()
    } else {
        path.with_extension("tmp")
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&target)
        .with_context(|| {
            if create_new && path.exists() {
                format!("{} exists: a keyring is never overwritten (choose another --out, or `synqx vault rotate --vault-key {}` to add a key)", path.display(), path.display())
            } else {
                format!("creating {}", target.display())
            }
        })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", target.display()))?;
    if !create_new {
        std::fs::rename(&target, path).with_context(|| format!("replacing {}", path.display()))?;
    }
    Ok(())
}

/// Replaces a file's content atomically, keeping its permissions.
fn write_replacing(path: &Path, text: &str) -> anyhow::Result<()> {
    let temp = path.with_extension("resealing");
    std::fs::write(&temp, text).with_context(|| format!("writing {}", temp.display()))?;
    if let Ok(meta) = std::fs::metadata(path) {
        std::fs::set_permissions(&temp, meta.permissions())
            .with_context(|| format!("setting the permissions of {}", temp.display()))?;
    }
    std::fs::rename(&temp, path).with_context(|| format!("replacing {}", path.display()))
}

async fn client() -> anyhow::Result<kube::Client> {
    kube::Client::try_default()
        .await
        .context("connecting to the cluster (KUBECONFIG or the pod's service account); or pass the key as a file")
}

async fn cluster_public_key(namespace: &str) -> anyhow::Result<PublicKey> {
    let api: Api<ConfigMap> = Api::namespaced(client().await?, namespace);
    let source = format!("ConfigMap {namespace}/{VAULT_OBJECT_NAME}");
    let map = api
        .get_opt(VAULT_OBJECT_NAME)
        .await
        .with_context(|| format!("reading {source}"))?;
    let Some(map) = map else {
        bail!(
            "{source} does not exist: the operator publishes each served namespace's public key there (is the namespace served?); or pass --public-key FILE"
        );
    };
    let line = map
        .data
        .as_ref()
        .and_then(|d| d.get(PUBLIC_KEY_CONFIG_KEY))
        .with_context(|| format!("{source} has no key \"{PUBLIC_KEY_CONFIG_KEY}\""))?;
    Ok(PublicKey::parse(&source, line)?)
}

async fn cluster_keyring(namespace: &str) -> anyhow::Result<Keyring> {
    let (keyring, _) = cluster_secret(namespace).await?;
    Ok(keyring)
}

async fn cluster_secret(namespace: &str) -> anyhow::Result<(Keyring, Secret)> {
    let api: Api<Secret> = Api::namespaced(client().await?, namespace);
    let source = format!("Secret {namespace}/{VAULT_OBJECT_NAME}");
    let secret = api
        .get_opt(VAULT_OBJECT_NAME)
        .await
        .with_context(|| format!("reading {source} (it needs the right to get Secrets there)"))?
        .with_context(|| {
            format!("{source} does not exist: the operator creates it in each namespace it serves")
        })?;
    let text = secret
        .data
        .as_ref()
        .and_then(|d| d.get(KEYRING_SECRET_KEY))
        .with_context(|| format!("{source} has no key \"{KEYRING_SECRET_KEY}\""))?;
    let text = Zeroizing::new(
        String::from_utf8(text.0.clone())
            .with_context(|| format!("{source}: the keyring is not UTF-8"))?,
    );
    Ok((Keyring::from_text(&source, &text)?, secret))
}

/// Adds a key to the namespace's Secret (guarded by its resourceVersion, so a concurrent
/// change is not lost) and publishes the new public key.
async fn rotate_in_cluster(namespace: &str) -> anyhow::Result<(String, String)> {
    let (mut keyring, mut secret) = cluster_secret(namespace).await?;
    let id = keyring.rotate(&now())?.id().to_string();
    let text = keyring.to_text();
    secret.data.get_or_insert_default().insert(
        KEYRING_SECRET_KEY.into(),
        ByteString(text.as_bytes().to_vec()),
    );
    let client = client().await?;
    Api::<Secret>::namespaced(client.clone(), namespace)
        .replace(VAULT_OBJECT_NAME, &PostParams::default(), &secret)
        .await
        .with_context(|| format!("updating Secret {namespace}/{VAULT_OBJECT_NAME} (changed meanwhile? run rotate again)"))?;
    let patch = serde_json::json!({
        "data": { PUBLIC_KEY_CONFIG_KEY: keyring.newest().public_key().to_line() }
    });
    Api::<ConfigMap>::namespaced(client, namespace)
        .patch(VAULT_OBJECT_NAME, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("publishing the new public key in ConfigMap {namespace}/{VAULT_OBJECT_NAME} (the operator also does on its next pass)"))?;
    Ok((id, keyring.ids()))
}
