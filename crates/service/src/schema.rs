//! Dataset schemas in the managed service's Avro form, and the defaults the
//! original deployment created (extended with optional travel fields).

use crate::error::{Result, ServiceError};
use serde::Deserialize;
use travelrec_store::DatasetType;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    String,
    Int,
    Long,
    Float,
    Double,
    Boolean,
}

impl FieldType {
    fn parse(name: &str) -> Option<FieldType> {
        Some(match name {
            "string" => FieldType::String,
            "int" => FieldType::Int,
            "long" => FieldType::Long,
            "float" => FieldType::Float,
            "double" => FieldType::Double,
            "boolean" => FieldType::Boolean,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Int => "int",
            FieldType::Long => "long",
            FieldType::Float => "float",
            FieldType::Double => "double",
            FieldType::Boolean => "boolean",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub field_type: FieldType,
    pub nullable: bool,
    /// Multi-valued with `|` (e.g. `Adventure|Comedy`), each value ≤ 1,000 characters.
    pub categorical: bool,
    /// Free text, ≤ 20,000 characters.
    pub textual: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DatasetSchema {
    pub fields: Vec<Field>,
}

#[derive(Deserialize)]
struct AvroRecord {
    #[serde(rename = "type")]
    record_type: String,
    fields: Vec<AvroField>,
}

#[derive(Deserialize)]
struct AvroField {
    name: String,
    #[serde(rename = "type")]
    field_type: serde_json::Value,
    #[serde(default)]
    categorical: bool,
    #[serde(default)]
    textual: bool,
}

impl DatasetSchema {
    /// Parses an Avro record schema (JSON text) as the managed service accepts it.
    pub fn parse(avro: &str) -> Result<DatasetSchema> {
        let record: AvroRecord =
            serde_json::from_str(avro).map_err(|e| ServiceError::invalid(format!("schema is not a valid Avro record: {e}")))?;
        if record.record_type != "record" {
            return Err(ServiceError::invalid(format!("schema type must be \"record\", got \"{}\"", record.record_type)));
        }
        let mut fields = Vec::new();
        for f in record.fields {
            let (type_name, nullable) = match &f.field_type {
                serde_json::Value::String(t) => (t.clone(), false),
                serde_json::Value::Array(parts) => {
                    let names: Vec<&str> = parts.iter().filter_map(|p| p.as_str()).collect();
                    match names.as_slice() {
                        ["null", t] | [t, "null"] if names.len() == parts.len() => (t.to_string(), true),
                        _ => {
                            return Err(ServiceError::invalid(format!(
                                "field {}: a union type must be [\"null\", <type>], got {}",
                                f.name, f.field_type
                            )));
                        }
                    }
                }
                other => return Err(ServiceError::invalid(format!("field {}: unsupported type {other}", f.name))),
            };
            let field_type = FieldType::parse(&type_name).ok_or_else(|| {
                ServiceError::invalid(format!(
                    "field {}: unknown type \"{type_name}\"; use string, int, long, float, double or boolean",
                    f.name
                ))
            })?;
            if (f.categorical || f.textual) && field_type != FieldType::String {
                return Err(ServiceError::invalid(format!("field {}: only string fields can be categorical or textual", f.name)));
            }
            if fields.iter().any(|g: &Field| g.name.eq_ignore_ascii_case(&f.name)) {
                return Err(ServiceError::invalid(format!("field {} appears twice", f.name)));
            }
            fields.push(Field { name: f.name.to_ascii_uppercase(), field_type, nullable, categorical: f.categorical, textual: f.textual });
        }
        Ok(DatasetSchema { fields })
    }

    /// Checks that the schema has the fields a dataset of `dataset_type` requires.
    pub fn check_for(&self, dataset_type: DatasetType) -> Result<()> {
        let required: &[(&str, &[FieldType])] = match dataset_type {
            DatasetType::Interactions => {
                &[("USER_ID", &[FieldType::String]), ("ITEM_ID", &[FieldType::String]), ("TIMESTAMP", &[FieldType::Long, FieldType::Int])]
            }
            DatasetType::Items => &[("ITEM_ID", &[FieldType::String])],
            DatasetType::Users => &[("USER_ID", &[FieldType::String])],
            DatasetType::LocalEvents => {
                &[("LOCAL_EVENT_ID", &[FieldType::String]), ("START_DATE", &[FieldType::String]), ("END_DATE", &[FieldType::String])]
            }
        };
        for (name, types) in required {
            match self.field(name) {
                Some(f) if types.contains(&f.field_type) && !f.nullable => {}
                Some(f) => {
                    return Err(ServiceError::invalid(format!(
                        "an {} schema needs a required {name} field of type {}; it is {}{}",
                        dataset_type.as_str(),
                        types[0].name(),
                        if f.nullable { "nullable " } else { "" },
                        f.field_type.name()
                    )));
                }
                None => {
                    return Err(ServiceError::invalid(format!("an {} schema needs a {name} field", dataset_type.as_str())));
                }
            }
        }
        Ok(())
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name.eq_ignore_ascii_case(name))
    }
}

/// The interactions schema the original deployment called `my-schema`,
/// extended with optional context fields.
pub const DEFAULT_INTERACTIONS_SCHEMA: &str = r#"{
  "type": "record", "name": "Interactions", "namespace": "com.amazonaws.personalize.schema", "version": "1.0",
  "fields": [
    {"name": "USER_ID", "type": "string"},
    {"name": "ITEM_ID", "type": "string"},
    {"name": "TIMESTAMP", "type": "long"},
    {"name": "EVENT_TYPE", "type": "string"},
    {"name": "EVENT_VALUE", "type": ["null", "float"]},
    {"name": "SESSION_ID", "type": ["null", "string"]},
    {"name": "LOCATION", "type": ["null", "string"]},
    {"name": "DEVICE", "type": ["null", "string"], "categorical": true}
  ]
}"#;

/// `my-item-schema`, with optional travel fields.
pub const DEFAULT_ITEMS_SCHEMA: &str = r#"{
  "type": "record", "name": "Items", "namespace": "com.amazonaws.personalize.schema", "version": "1.0",
  "fields": [
    {"name": "ITEM_ID", "type": "string"},
    {"name": "GENRE", "type": ["null", "string"], "categorical": true},
    {"name": "DESCRIPTION", "type": ["null", "string"], "textual": true},
    {"name": "NAME", "type": ["null", "string"]},
    {"name": "CITY", "type": ["null", "string"], "categorical": true},
    {"name": "LATITUDE", "type": ["null", "double"]},
    {"name": "LONGITUDE", "type": ["null", "double"]},
    {"name": "SEASONS", "type": ["null", "string"], "categorical": true},
    {"name": "CREATION_TIMESTAMP", "type": ["null", "long"]}
  ]
}"#;

/// `my-user-schema`, with an optional home city.
pub const DEFAULT_USERS_SCHEMA: &str = r#"{
  "type": "record", "name": "Users", "namespace": "com.amazonaws.personalize.schema", "version": "1.0",
  "fields": [
    {"name": "USER_ID", "type": "string"},
    {"name": "AGE", "type": "int"},
    {"name": "HOME_CITY", "type": ["null", "string"], "categorical": true}
  ]
}"#;

/// `my-local-events-schema`: festivals, markets and other dated happenings,
/// at an attraction (ITEM_ID) and/or a place.
pub const DEFAULT_LOCAL_EVENTS_SCHEMA: &str = r#"{
  "type": "record", "name": "LocalEvents", "namespace": "travelrec.schema", "version": "1.0",
  "fields": [
    {"name": "LOCAL_EVENT_ID", "type": "string"},
    {"name": "NAME", "type": ["null", "string"]},
    {"name": "CITY", "type": ["null", "string"], "categorical": true},
    {"name": "ITEM_ID", "type": ["null", "string"]},
    {"name": "LATITUDE", "type": ["null", "double"]},
    {"name": "LONGITUDE", "type": ["null", "double"]},
    {"name": "START_DATE", "type": "string"},
    {"name": "END_DATE", "type": "string"}
  ]
}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schemas_parse_and_fit_their_dataset_types() {
        for (avro, t) in [
            (DEFAULT_INTERACTIONS_SCHEMA, DatasetType::Interactions),
            (DEFAULT_ITEMS_SCHEMA, DatasetType::Items),
            (DEFAULT_USERS_SCHEMA, DatasetType::Users),
            (DEFAULT_LOCAL_EVENTS_SCHEMA, DatasetType::LocalEvents),
        ] {
            DatasetSchema::parse(avro).unwrap().check_for(t).unwrap();
        }
        let items = DatasetSchema::parse(DEFAULT_ITEMS_SCHEMA).unwrap();
        let genre = items.field("genre").unwrap();
        assert!(genre.nullable && genre.categorical);
    }

    #[test]
    fn bad_schemas_are_explained() {
        let err = DatasetSchema::parse(r#"{"type":"record","fields":[{"name":"X","type":"uuid"}]}"#).unwrap_err();
        assert!(err.message.contains("unknown type \"uuid\""), "{err}");
        let err = DatasetSchema::parse(r#"{"type":"record","fields":[{"name":"ITEM_ID","type":"string"}]}"#)
            .unwrap()
            .check_for(DatasetType::Interactions)
            .unwrap_err();
        assert!(err.message.contains("needs a USER_ID field"), "{err}");
        assert!(DatasetSchema::parse("{").unwrap_err().message.contains("not a valid Avro record"));
    }
}
