//! Building Cedar entities from domain values, in the shape of
//! `data/schema.cedarschema`.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use portcullis_domain::{Model, PrincipalAttributes};

use crate::embargo::EmbargoList;
use crate::profile::ProfileFacts;

pub(crate) const PRINCIPAL_TYPE: &str = "Portcullis::Principal";
pub(crate) const MODEL_TYPE: &str = "Portcullis::Model";
pub(crate) const MODEL_FAMILY_TYPE: &str = "Portcullis::ModelFamily";
pub(crate) const ORGANIZATION_TYPE: &str = "Portcullis::Organization";
pub(crate) const DESTINATION_LIST_TYPE: &str = "Portcullis::DestinationList";
pub(crate) const ACTION_TYPE: &str = "Portcullis::Action";

/// The id of the destination list the engine fills from the embargo data.
pub(crate) const EMBARGOED_DESTINATIONS_ID: &str = "embargoed";

pub(crate) fn uid(type_name: &str, id: &str) -> Result<EntityUid, String> {
    let type_name = EntityTypeName::from_str(type_name).map_err(|error| error.to_string())?;
    Ok(EntityUid::from_type_name_and_id(
        type_name,
        EntityId::new(id),
    ))
}

fn string(value: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(value.to_owned())
}

fn string_set<'a>(values: impl IntoIterator<Item = &'a str>) -> RestrictedExpression {
    RestrictedExpression::new_set(values.into_iter().map(string))
}

/// The principal entity for `attributes` as `facts` (the active profile's
/// verdict at some instant) describe it.
pub(crate) fn principal_entity(
    principal_uid: EntityUid,
    attributes: &PrincipalAttributes,
    facts: &ProfileFacts,
    profile_name: &str,
) -> Result<Entity, String> {
    let mut attrs: HashMap<String, RestrictedExpression> = HashMap::with_capacity(10);
    attrs.insert(
        "active".into(),
        RestrictedExpression::new_bool(attributes.active),
    );
    attrs.insert(
        "employee".into(),
        RestrictedExpression::new_bool(attributes.employee),
    );
    attrs.insert(
        "screening".into(),
        string(attributes.screening.status().as_str()),
    );
    attrs.insert(
        "verified".into(),
        RestrictedExpression::new_bool(facts.verified),
    );
    attrs.insert(
        "us_person".into(),
        RestrictedExpression::new_bool(facts.us_person),
    );
    attrs.insert(
        "assurance_level".into(),
        RestrictedExpression::new_long(facts.assurance_level.map_or(0, |level| level.rank())),
    );
    attrs.insert(
        "attributed_countries".into(),
        string_set(
            facts
                .attributed_countries
                .iter()
                .map(|country| country.as_str()),
        ),
    );
    if let Some(residence_country) = facts.residence_country {
        attrs.insert(
            "residence_country".into(),
            string(residence_country.as_str()),
        );
    }
    attrs.insert("profile".into(), string(profile_name));
    let mut parents = HashSet::new();
    if let Some(organization) = &attributes.organization {
        let organization_uid = uid(ORGANIZATION_TYPE, organization)?;
        attrs.insert(
            "organization".into(),
            RestrictedExpression::new_entity_uid(organization_uid.clone()),
        );
        parents.insert(organization_uid);
    }
    Entity::new(principal_uid, attrs, parents).map_err(|error| error.to_string())
}

pub(crate) fn organization_entity(name: &str, is_operator: bool) -> Result<Entity, String> {
    let attrs = HashMap::from([(
        "is_operator".to_owned(),
        RestrictedExpression::new_bool(is_operator),
    )]);
    Entity::new(uid(ORGANIZATION_TYPE, name)?, attrs, HashSet::new())
        .map_err(|error| error.to_string())
}

pub(crate) fn model_family_entity(family: &str) -> Result<Entity, String> {
    Ok(Entity::new_no_attrs(
        uid(MODEL_FAMILY_TYPE, family)?,
        HashSet::new(),
    ))
}

pub(crate) fn model_entity(model_uid: EntityUid, model: &Model) -> Result<Entity, String> {
    let family_uid = uid(MODEL_FAMILY_TYPE, &model.family)?;
    let mut attrs: HashMap<String, RestrictedExpression> = HashMap::with_capacity(5);
    attrs.insert("name".into(), string(&model.name));
    attrs.insert("state".into(), string(model.state.as_str()));
    attrs.insert(
        "family".into(),
        RestrictedExpression::new_entity_uid(family_uid.clone()),
    );
    attrs.insert(
        "tags".into(),
        string_set(model.tags.iter().map(String::as_str)),
    );
    if let Some(safeguard_profile) = &model.safeguard_profile {
        attrs.insert("safeguard_profile".into(), string(safeguard_profile));
    }
    Entity::new(model_uid, attrs, HashSet::from([family_uid])).map_err(|error| error.to_string())
}

pub(crate) fn destination_list_entity(embargo: &EmbargoList) -> Result<Entity, String> {
    let attrs = HashMap::from([
        (
            "countries".to_owned(),
            string_set(embargo.blocked_countries().map(|country| country.as_str())),
        ),
        (
            "subdivisions".to_owned(),
            string_set(embargo.blocked_subdivisions().map(|code| code.as_str())),
        ),
    ]);
    Entity::new(
        uid(DESTINATION_LIST_TYPE, EMBARGOED_DESTINATIONS_ID)?,
        attrs,
        HashSet::new(),
    )
    .map_err(|error| error.to_string())
}
