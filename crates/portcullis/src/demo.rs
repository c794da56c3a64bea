//! The demo story from the design: three models on the built-in mock, five
//! principals with verified attributes, the operator organization `lab`, an
//! admin and a second admin who approves (`carol`, role `approver`, for the
//! two-person rule), and a key per principal written to `demo-keys.json`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use jiff::{SignedDuration, Timestamp};
use portcullis_domain::{ModelDraft, PrincipalAttributes, Provider, ReleaseState};
use portcullis_gateway::admin::issue_key;
use portcullis_store::{Admin, AdminRole, Store};
use serde_json::json;

/// The operator's own organization in the demo.
pub const DEMO_ORGANIZATION: &str = "lab";
/// The demo's first admin.
pub const DEMO_ADMIN_ID: &str = "admin";
/// The demo's second admin, who approves what the first asks for.
pub const DEMO_APPROVER_ID: &str = "carol";
const DEMO_KEY_NAME: &str = "demo";

/// The names of the demo credentials a replica issues: the admin id and the
/// key name (the approver is `carol` or `carol-REPLICA` alike). Replicas seeding one shared store each get their own, so one
/// replica's start does not revoke what another wrote to its
/// `demo-keys.json`; a single node (replica `local`) keeps the plain names.
pub fn demo_credential_names(replica_id: &str) -> (String, String) {
    if replica_id == "local" {
        (DEMO_ADMIN_ID.to_owned(), DEMO_KEY_NAME.to_owned())
    } else {
        (
            format!("{DEMO_ADMIN_ID}-{replica_id}"),
            format!("{DEMO_KEY_NAME}-{replica_id}"),
        )
    }
}

pub fn demo_models() -> Vec<ModelDraft> {
    let model =
        |name: &str, state, family: &str, tags: &[&str], profile: Option<&str>| ModelDraft {
            name: name.into(),
            provider: Provider::Mock,
            base_url: None,
            upstream_model: Some(name.into()),
            state,
            family: Some(family.into()),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            safeguard_profile: profile.map(Into::into),
            api_key: None,
            api_key_env: None,
            forward_mock_headers: false,
        };
    vec![
        model(
            "mythos",
            ReleaseState::Internal,
            "frontier",
            &["fail_closed"],
            None,
        ),
        model(
            "fable",
            ReleaseState::Released,
            "frontier",
            &["fail_closed"],
            Some("cyber"),
        ),
        model("haiku", ReleaseState::Released, "haiku", &[], None),
    ]
}

/// (id, display name, organization, employee, nationalities, us_person_basis, residence)
type DemoPrincipal = (
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
    &'static str,
    &'static str,
);

const DEMO_PRINCIPALS: &[DemoPrincipal] = &[
    (
        "alice",
        "Alice Adams",
        "acme",
        false,
        &["US"],
        "citizen",
        "US",
    ),
    ("bruno", "Bruno Moreau", "lab", true, &["FR"], "none", "US"),
    (
        "chen",
        "Chen Jing",
        "acme",
        false,
        &["US", "CN"],
        "citizen",
        "US",
    ),
    (
        "dara",
        "Dara Raman",
        "acme",
        false,
        &["IN"],
        "lawful_permanent_resident",
        "US",
    ),
    (
        "emeka",
        "Emeka Okonkwo",
        "acme",
        false,
        &["NG"],
        "none",
        "US",
    ),
];

pub fn demo_principals(
    started_at: Timestamp,
) -> anyhow::Result<Vec<(String, PrincipalAttributes)>> {
    let verified_at = started_at - SignedDuration::from_hours(30 * 24);
    let expires_at = started_at + SignedDuration::from_hours(365 * 24);
    DEMO_PRINCIPALS
        .iter()
        .map(|(id, name, organization, employee, nationalities, basis, residence)| {
            let (given, family) = name.split_once(' ').unwrap_or((name, ""));
            let document = json!({
                "id": id, "organization": organization, "employee": employee, "screening": "clear",
                "verified_claims": {
                    "verification": {"trust_framework": "nist_800_63A", "assurance_level": "ial2",
                                     "time": verified_at.to_string(), "expires_at": expires_at.to_string()},
                    "claims": {"nationalities": nationalities, "us_person_basis": basis, "residence_country": residence,
                               "given_name": given, "family_name": family, "name": name},
                },
            });
            let attributes: PrincipalAttributes =
                serde_json::from_value(document).with_context(|| format!("demo principal `{id}`"))?;
            Ok(((*name).to_owned(), attributes))
        })
        .collect()
}

/// Secrets created for this demo run.
pub struct DemoSecrets {
    pub admin_token: String,
    /// The token of the demo approver `carol`.
    pub approver_token: String,
    pub keys: BTreeMap<String, String>,
}

/// Seeds (or re-seeds) the demo story. Each start rotates this replica's
/// demo keys and admin token, revoking its previous ones, so its
/// `demo-keys.json` always holds its only valid demo credentials. Models,
/// principals and settings are upserted, so replicas starting together on
/// one store all succeed and agree.
pub async fn seed(store: &Store, now: Timestamp, replica_id: &str) -> anyhow::Result<DemoSecrets> {
    let (admin_id, key_name) = demo_credential_names(replica_id);
    for draft in demo_models() {
        let model = draft.validate().context("demo model")?;
        store.upsert_model(&model, now).await?;
    }
    store
        .set_meta("operator_organization", DEMO_ORGANIZATION)
        .await?;
    let mut keys = BTreeMap::new();
    for (display_name, attributes) in demo_principals(now)? {
        store
            .upsert_principal(&display_name, &attributes, now)
            .await?;
        store
            .revoke_keys_named(&attributes.id, &key_name, now)
            .await?;
        let (key, secret) = issue_key(&attributes.id, &key_name, None, now)
            .map_err(|e| anyhow::anyhow!("cannot issue demo key: {}", e.message))?;
        store.insert_key(&key).await?;
        keys.insert(attributes.id.clone(), secret);
    }
    let approver_id = match replica_id {
        "local" => DEMO_APPROVER_ID.to_owned(),
        other => format!("{DEMO_APPROVER_ID}-{other}"),
    };
    let admin_token =
        seed_admin(store, admin_id, "Demo administrator", AdminRole::Admin, now).await?;
    let approver_token = seed_admin(
        store,
        approver_id,
        "Carol, compliance approver",
        AdminRole::Approver,
        now,
    )
    .await?;
    Ok(DemoSecrets {
        admin_token,
        approver_token,
        keys,
    })
}

/// Creates a demo admin, or gives the existing one a fresh token; returns
/// the token.
async fn seed_admin(
    store: &Store,
    id: String,
    display_name: &str,
    role: AdminRole,
    now: Timestamp,
) -> anyhow::Result<String> {
    let token = new_admin_token()?;
    let token_sha256 = portcullis_domain::hash_api_key(&token);
    let contents = store.load().await?;
    if contents.admins.iter().any(|a| a.id == id) {
        store.set_admin_token(&id, &token_sha256).await?;
    } else {
        store
            .insert_admin(&Admin {
                id,
                display_name: display_name.into(),
                role,
                token_sha256,
                created_at: now,
                disabled_at: None,
            })
            .await?;
    }
    Ok(token)
}

/// A fresh admin token: 256 random bits behind a recognisable prefix.
pub fn new_admin_token() -> anyhow::Result<String> {
    let generated =
        portcullis_domain::GeneratedKey::generate().context("no randomness available")?;
    Ok(generated
        .secret
        .replacen(portcullis_domain::KEY_PREFIX, "pcla_", 1))
}

/// Writes `demo-keys.json` atomically (temp file, then rename) so a reader
/// never sees half a file.
pub fn write_demo_keys(
    dir: &Path,
    secrets: &DemoSecrets,
    listen: std::net::SocketAddr,
    admin_listen: std::net::SocketAddr,
) -> anyhow::Result<()> {
    let document = json!({
        "admin_token": secrets.admin_token,
        "approver_token": secrets.approver_token,
        "keys": secrets.keys,
        "listen": listen.to_string(),
        "admin_listen": admin_listen.to_string(),
    });
    let path = dir.join("demo-keys.json");
    let temporary = dir.join(".demo-keys.json.tmp");
    std::fs::write(&temporary, serde_json::to_vec_pretty(&document)?)
        .with_context(|| format!("cannot write `{}`", temporary.display()))?;
    restrict_permissions(&temporary);
    std::fs::rename(&temporary, &path)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(())
}

/// Makes a file holding secrets readable by its owner only.
pub fn restrict_permissions(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
}
