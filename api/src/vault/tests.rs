use super::*;
use crate::SecretValue;

const NOW: &str = "2026-12-01T00:00:00Z";

fn binding() -> Binding {
    Binding::new("etl", "warehouse", "postgres.password")
}

fn keyring() -> Keyring {
    Keyring::generate(NOW).expect("the system RNG works")
}

fn err(result: Result<impl std::fmt::Debug, VaultError>) -> VaultError {
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e,
    }
}

#[test]
fn a_sealed_value_opens_with_its_keyring_and_binding() {
    let keys = keyring();
    let sealed = seal(&keys.newest().public_key(), &binding(), b"s3cr3t-pa55").unwrap();
    assert!(
        sealed.starts_with(&format!("sqx1:{}:", keys.newest().id())),
        "{sealed}"
    );
    assert!(
        crate::secret::check_sealed_format(&sealed).is_ok(),
        "{sealed}"
    );
    assert!(!sealed.contains("s3cr3t"));
    assert_eq!(
        keys.open(&binding(), &sealed).unwrap().as_str(),
        "s3cr3t-pa55"
    );
    // Every seal uses a fresh ephemeral key: the same value never seals the same way twice.
    let again = seal(&keys.newest().public_key(), &binding(), b"s3cr3t-pa55").unwrap();
    assert_ne!(sealed, again);
}

#[test]
fn another_keyring_names_the_key_id_it_lacks() {
    let keys = keyring();
    let other = keyring();
    let sealed = seal(&keys.newest().public_key(), &binding(), b"pw").unwrap();
    let e = err(other.open(&binding(), &sealed));
    assert!(matches!(&e, VaultError::UnknownKey { key_id, .. } if key_id == keys.newest().id()));
    let text = e.to_string();
    assert!(text.contains(keys.newest().id()), "{text}");
    assert!(text.contains(other.newest().id()), "{text}");
    assert!(
        text.contains("Connection \"etl/warehouse\" field spec.postgres.password"),
        "{text}"
    );
}

#[test]
fn a_value_moved_elsewhere_says_which_name_differs() {
    let keys = keyring();
    let sealed = seal(&keys.newest().public_key(), &binding(), b"pw").unwrap();
    let cases = [
        (
            Binding::new("other", "warehouse", "postgres.password"),
            BindingPart::Namespace,
            "another namespace",
        ),
        (
            Binding::new("etl", "lake", "postgres.password"),
            BindingPart::Connection,
            "another Connection",
        ),
        (
            Binding::new("etl", "warehouse", "postgres.user"),
            BindingPart::Field,
            "another field",
        ),
    ];
    for (target, which, words) in cases {
        let e = err(keys.open(&target, &sealed));
        assert!(
            matches!(&e, VaultError::Moved { part, .. } if *part == which),
            "{e}"
        );
        let text = e.to_string();
        assert!(text.contains(words), "{text}");
        assert!(text.contains(&target.to_string()), "{text}");
        assert!(text.contains(keys.newest().id()), "{text}");
    }
}

#[test]
fn hints_cannot_be_forged_to_move_a_value() {
    // Rewriting the name hashes to those of another binding still fails: the binding itself
    // is authenticated.
    let keys = keyring();
    let target = Binding::new("etl", "lake", "postgres.password");
    let sealed = seal(&keys.newest().public_key(), &binding(), b"pw").unwrap();
    let decoy = seal(&keys.newest().public_key(), &target, b"xx").unwrap();
    let [p, k, e, c]: [&str; 4] = sealed.split(':').collect::<Vec<_>>().try_into().unwrap();
    let decoy_ct = decoy.rsplit(':').next().unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut forged = b64.decode(c).unwrap();
    forged[..12].copy_from_slice(&b64.decode(decoy_ct).unwrap()[..12]);
    let forged = format!("{p}:{k}:{e}:{}", b64.encode(forged));
    assert!(matches!(
        err(keys.open(&target, &forged)),
        VaultError::Tampered { .. }
    ));
}

#[test]
fn a_changed_ciphertext_is_rejected_as_tampered() {
    let keys = keyring();
    let sealed = seal(
        &keys.newest().public_key(),
        &binding(),
        b"a longer password",
    )
    .unwrap();
    // Flip one character of the ciphertext past the name hashes, and one of the ephemeral key.
    let (head, ct) = sealed.rsplit_once(':').unwrap();
    let mut chars: Vec<char> = ct.chars().collect();
    let i = chars.len() - 3;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let changed = format!("{head}:{}", chars.iter().collect::<String>());
    let e = err(keys.open(&binding(), &changed));
    assert!(matches!(e, VaultError::Tampered { .. }), "{e}");
    assert!(e.to_string().contains("changed or damaged"), "{e}");
    let parts: Vec<&str> = sealed.split(':').collect();
    let other_eph = seal(&keys.newest().public_key(), &binding(), b"x").unwrap();
    let swapped = format!(
        "{}:{}:{}:{}",
        parts[0],
        parts[1],
        other_eph.split(':').nth(2).unwrap(),
        parts[3]
    );
    assert!(matches!(
        err(keys.open(&binding(), &swapped)),
        VaultError::Tampered { .. }
    ));
    // Truncated and malformed values say what is wrong with their shape.
    let e = err(keys.open(&binding(), &sealed[..sealed.len() - 30]));
    assert!(
        matches!(
            e,
            VaultError::Tampered { .. } | VaultError::Malformed { .. }
        ),
        "{e}"
    );
    let e = err(keys.open(&binding(), "sqx1:k1:AAAA:BBBB"));
    assert!(
        e.to_string().contains("ephemeral key is not 32 bytes"),
        "{e}"
    );
}

#[test]
fn rotation_adds_a_key_and_old_values_still_open() {
    let mut keys = keyring();
    let old_id = keys.newest().id().to_string();
    let old = seal(&keys.newest().public_key(), &binding(), b"old").unwrap();
    keys.rotate("2026-12-02T00:00:00Z").unwrap();
    let new_id = keys.newest().id().to_string();
    assert_ne!(old_id, new_id);
    assert_eq!(keys.keys().len(), 2);
    let new = seal(&keys.newest().public_key(), &binding(), b"new").unwrap();
    assert!(new.contains(&format!(":{new_id}:")));
    assert_eq!(keys.open(&binding(), &old).unwrap().as_str(), "old");
    assert_eq!(keys.open(&binding(), &new).unwrap().as_str(), "new");
    // Reseal moves the old value to the newest key and leaves a current one as it is.
    let resealed = keys.reseal(&binding(), &old).unwrap();
    assert!(resealed.contains(&format!(":{new_id}:")), "{resealed}");
    assert_eq!(keys.open(&binding(), &resealed).unwrap().as_str(), "old");
    assert_eq!(keys.reseal(&binding(), &new).unwrap(), new);
    // A resealed value still opens only where it was sealed for.
    assert!(matches!(
        err(keys.reseal(&Binding::new("etl", "lake", "postgres.password"), &old)),
        VaultError::Moved { .. }
    ));
}

#[test]
fn keyrings_and_public_keys_round_trip_through_text() {
    let mut keys = keyring();
    keys.rotate("2026-12-02T00:00:00Z").unwrap();
    let text = keys.to_text();
    let back = Keyring::from_text("keyring.json", &text).unwrap();
    assert_eq!(back.ids(), keys.ids());
    assert_eq!(back.newest().id(), keys.newest().id());
    assert_eq!(back.keys()[1].created(), "2026-12-02T00:00:00Z");
    let sealed = seal(&keys.keys()[0].public_key(), &binding(), b"pw").unwrap();
    assert_eq!(back.open(&binding(), &sealed).unwrap().as_str(), "pw");

    let line = keys.newest().public_key().to_line();
    let parsed = PublicKey::parse("pub.txt", &format!("# the etl namespace\n{line}\n")).unwrap();
    assert_eq!(parsed, keys.newest().public_key());
    // A key whose id does not match (a pasted or edited line) is refused.
    let other = keyring().newest().public_key().to_line();
    let mixed = format!(
        "{}:{}",
        &line[..line.rfind(':').unwrap()],
        other.rsplit(':').next().unwrap()
    );
    let e = err(PublicKey::parse("pub.txt", &mixed));
    assert!(
        e.to_string()
            .contains("pub.txt: not a vault public key: the key id"),
        "{e}"
    );
    // Debug output of keys never shows private bytes.
    let debug = format!("{keys:?}");
    let private = text
        .split("\"privateKey\": \"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert!(!debug.contains(private), "{debug}");
}

#[test]
fn broken_keyrings_are_refused_naming_the_source() {
    let e = err(Keyring::from_text("Secret etl/synqx-vault", "{"));
    assert!(
        e.to_string()
            .starts_with("Secret etl/synqx-vault: not a vault keyring"),
        "{e}"
    );
    let e = err(Keyring::from_text(
        "k.json",
        r#"{"kind":"SynqXVaultKeyring","keys":[]}"#,
    ));
    assert!(matches!(e, VaultError::EmptyKeyring { .. }), "{e}");
    let keys = keyring();
    let text = keys.to_text().replace(keys.newest().id(), "kffffffffff");
    let e = err(Keyring::from_text("k.json", &text));
    assert!(e.to_string().contains("does not match its id"), "{e}");
}

#[test]
fn empty_and_huge_values_are_not_sealed() {
    let public = keyring().newest().public_key();
    assert_eq!(
        seal(&public, &binding(), b""),
        Err(VaultError::EmptyPlaintext)
    );
    let huge = vec![b'x'; MAX_PLAINTEXT + 1];
    assert!(matches!(
        seal(&public, &binding(), &huge),
        Err(VaultError::PlaintextTooLong { .. })
    ));
}

#[test]
fn every_secret_field_of_every_connector_can_be_sealed() {
    use crate::connection::*;
    let v = || SecretValue::plain("x");
    let some = || Some(SecretValue::plain("x"));
    let spec = ConnectionSpec {
        postgres: Some(PostgresConnection {
            user: v(),
            password: some(),
            ssl_root_cert: some(),
            ..Default::default()
        }),
        mysql: Some(MysqlConnection {
            user: v(),
            password: some(),
            ssl_root_cert: some(),
            ..Default::default()
        }),
        sqlserver: Some(SqlServerConnection {
            user: v(),
            password: some(),
            ..Default::default()
        }),
        snowflake: Some(SnowflakeConnection {
            user: v(),
            password: some(),
            private_key: some(),
            ..Default::default()
        }),
        bigquery: Some(BigQueryConnection {
            credentials_json: some(),
            ..Default::default()
        }),
        rest: Some(RestConnection {
            auth: Some(RestAuth {
                bearer_token: some(),
                basic: Some(BasicAuth {
                    username: v(),
                    password: v(),
                }),
                api_key: Some(ApiKeyAuth {
                    header: Some("h".into()),
                    query: None,
                    value: v(),
                }),
                oauth2: Some(OAuth2Auth {
                    token_url: "https://auth.example.com/token".into(),
                    client_id: v(),
                    client_secret: v(),
                    scopes: Vec::new(),
                }),
            }),
            ..Default::default()
        }),
        s3: Some(S3Connection {
            access_key_id: some(),
            secret_access_key: some(),
            session_token: some(),
            ..Default::default()
        }),
        mongodb: Some(MongoConnection {
            uri: v(),
            ..Default::default()
        }),
        redis: Some(RedisConnection {
            username: some(),
            password: some(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let paths: Vec<String> = spec.secret_values().into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, SEALABLE_FIELDS);
}
