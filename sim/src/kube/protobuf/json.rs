//! The JSON form of a k8s-pb message, as the API server writes and reads it: every message that
//! is an object in JSON maps field by field (the `messages!` list in `fields.rs`); the few whose
//! JSON is something else (times, quantities, int-or-strings, raw JSON, the JSON Schema unions)
//! are mapped here by hand.
//!
//! Go's protobuf marshalling writes every non-pointer field, so an empty string arrives for
//! each unset string field; like Go's `omitempty` on the way to JSON, empty strings, empty lists
//! and maps, and the zero time are left out. Numbers and booleans are kept (a pointer's zero,
//! such as `replicas: 0`, means something).

use std::collections::BTreeMap;

use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::RawExtension;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Map, Value};

/// A value that cannot be converted, and where it is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConvertError {
    pub field: String,
    pub message: String,
}

fn wrong(at: &str, message: impl Into<String>) -> ConvertError {
    ConvertError {
        field: if at.is_empty() {
            "<root>".into()
        } else {
            at.into()
        },
        message: message.into(),
    }
}

/// The path of a field below `at`.
pub fn join(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_string()
    } else {
        format!("{at}.{name}")
    }
}

/// A protobuf value with a JSON form.
pub trait Json: Sized + Default {
    fn to_json(&self, at: &str) -> Result<Value, ConvertError>;
    fn from_json(value: &Value, at: &str) -> Result<Self, ConvertError>;
    /// Left out of its parent's JSON object (Go's `omitempty`).
    fn omit(&self) -> bool {
        false
    }
}

/// Reads field `name` of `object`: absent and `null` are the default.
pub fn field<T: Json>(
    object: &Map<String, Value>,
    name: &str,
    at: &str,
) -> Result<T, ConvertError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(T::default()),
        Some(v) => T::from_json(v, &join(at, name)),
    }
}

/// Writes field `name` unless the value is left out.
pub fn put<T: Json>(
    object: &mut Map<String, Value>,
    name: &str,
    value: &T,
    at: &str,
) -> Result<(), ConvertError> {
    if !value.omit() {
        object.insert(name.to_string(), value.to_json(&join(at, name))?);
    }
    Ok(())
}

/// An embedded Go struct: its fields are the parent's own in JSON.
pub fn put_inline<T: Json>(
    object: &mut Map<String, Value>,
    value: &T,
    at: &str,
) -> Result<(), ConvertError> {
    if let Value::Object(fields) = value.to_json(at)? {
        object.extend(fields);
    }
    Ok(())
}

pub fn as_object<'a>(value: &'a Value, at: &str) -> Result<&'a Map<String, Value>, ConvertError> {
    value
        .as_object()
        .ok_or_else(|| wrong(at, "expected an object"))
}

/// Declares the field-by-field JSON mapping of messages: `field: "jsonName"`, `field: inline`
/// for an embedded struct, `via Codec` for bytes.
macro_rules! messages {
    ($($ty:path { $($field:ident : $how:tt $(via $codec:ident)?),* $(,)? })*) => {$(
        impl $crate::kube::protobuf::json::Json for $ty {
            fn to_json(&self, at: &str) -> Result<serde_json::Value, $crate::kube::protobuf::json::ConvertError> {
                #[allow(unused_mut)]
                let mut object = serde_json::Map::new();
                let _ = at;
                $( messages!(@put object, at, &self.$field, $how $(, $codec)?); )*
                Ok(serde_json::Value::Object(object))
            }
            fn from_json(value: &serde_json::Value, at: &str) -> Result<Self, $crate::kube::protobuf::json::ConvertError> {
                #[allow(unused_variables)]
                let object = $crate::kube::protobuf::json::as_object(value, at)?;
                Ok(Self { $( $field: messages!(@get object, value, at, $how $(, $codec)?), )* })
            }
        }
    )*};
    (@put $o:ident, $at:ident, $v:expr, inline) => {
        $crate::kube::protobuf::json::put_inline(&mut $o, $v, $at)?
    };
    (@put $o:ident, $at:ident, $v:expr, $name:literal) => {
        $crate::kube::protobuf::json::put(&mut $o, $name, $v, $at)?
    };
    (@put $o:ident, $at:ident, $v:expr, $name:literal, $codec:ident) => {
        if let Some(v) = $codec::to($v) { $o.insert($name.to_string(), v); }
    };
    (@get $o:ident, $value:ident, $at:ident, inline) => {
        Some($crate::kube::protobuf::json::Json::from_json($value, $at)?)
    };
    (@get $o:ident, $value:ident, $at:ident, $name:literal) => {
        $crate::kube::protobuf::json::field($o, $name, $at)?
    };
    (@get $o:ident, $value:ident, $at:ident, $name:literal, $codec:ident) => {
        $codec::from($o.get($name), &$crate::kube::protobuf::json::join($at, $name))?
    };
}
pub(crate) use messages;

impl Json for String {
    fn to_json(&self, _: &str) -> Result<Value, ConvertError> {
        Ok(Value::String(self.clone()))
    }
    fn from_json(value: &Value, at: &str) -> Result<Self, ConvertError> {
        value
            .as_str()
            .map(String::from)
            .ok_or_else(|| wrong(at, "expected a string"))
    }
    fn omit(&self) -> bool {
        self.is_empty()
    }
}

impl Json for bool {
    fn to_json(&self, _: &str) -> Result<Value, ConvertError> {
        Ok(Value::Bool(*self))
    }
    fn from_json(value: &Value, at: &str) -> Result<Self, ConvertError> {
        value
            .as_bool()
            .ok_or_else(|| wrong(at, "expected a boolean"))
    }
}

impl Json for i64 {
    fn to_json(&self, _: &str) -> Result<Value, ConvertError> {
        Ok(Value::from(*self))
    }
    fn from_json(value: &Value, at: &str) -> Result<Self, ConvertError> {
        value
            .as_i64()
            .ok_or_else(|| wrong(at, "expected an integer"))
    }
}

impl Json for i32 {
    fn to_json(&self, _: &str) -> Result<Value, ConvertError> {
        Ok(Value::from(*self))
    }
    fn from_json(value: &Value, at: &str) -> Result<Self, ConvertError> {
        value
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| wrong(at, "expected a 32-bit integer"))
    }
}

impl Json for f64 {
    fn to_json(&self, at: &str) -> Result<Value, ConvertError> {
        serde_json::Number::from_f64(*self)
            .map(Value::Number)
            .ok_or_else(|| wrong(at, "not a finite number"))
    }
    fn from_json(value: &Value, at: &str) -> Result<Self, ConvertError> {
        value.as_f64().ok_or_else(|| wrong(at, "expected a number"))
    }
}

impl<T: Json> Json for Option<T> {
    fn to_json(&self, at: &str) -> Result<Value, ConvertError> {
        match self {
            Some(v) => v.to_json(at),
            None => Ok(Value::Null),
        }
    }
    fn from_json(value: &Value, at: &str) -> Result<Self, ConvertError> {
        match value {
            Value::Null => Ok(None),
            v => T::from_json(v, at).map(Some),
        }
    }
    fn omit(&self) -> bool {
        self.as_ref().is_none_or(Json::omit)
    }
}

impl<T: Json> Json for Box<T> {
    fn to_json(&self, at: &str) -> Result<Value, ConvertError> {
        (**self).to_json(at)
    }
    fn from_json(value: &Value, at: &str) -> Result<Self, ConvertError> {
        T::from_json(value, at).map(Box::new)
    }
    fn omit(&self) -> bool {
        (**self).omit()
    }
}

impl<T: Json> Json for Vec<T> {
    fn to_json(&self, at: &str) -> Result<Value, ConvertError> {
        self.iter()
            .enumerate()
            .map(|(i, v)| v.to_json(&format!("{at}[{i}]")))
            .collect::<Result<_, _>>()
            .map(Value::Array)
    }
    fn from_json(value: &Value, at: &str) -> Result<Self, ConvertError> {
        value
            .as_array()
            .ok_or_else(|| wrong(at, "expected a list"))?
            .iter()
            .enumerate()
            .map(|(i, v)| T::from_json(v, &format!("{at}[{i}]")))
            .collect()
    }
    fn omit(&self) -> bool {
        self.is_empty()
    }
}

impl<T: Json> Json for BTreeMap<String, T> {
    fn to_json(&self, at: &str) -> Result<Value, ConvertError> {
        self.iter()
            .map(|(k, v)| Ok((k.clone(), v.to_json(&format!("{at}[{k}]"))?)))
            .collect::<Result<Map<_, _>, _>>()
            .map(Value::Object)
    }
    fn from_json(value: &Value, at: &str) -> Result<Self, ConvertError> {
        as_object(value, at)?
            .iter()
            .map(|(k, v)| Ok((k.clone(), T::from_json(v, &format!("{at}[{k}]"))?)))
            .collect()
    }
    fn omit(&self) -> bool {
        self.is_empty()
    }
}

/// `bytes` fields: base64 in JSON.
pub struct B64;

impl B64 {
    pub fn to(value: &Option<Vec<u8>>) -> Option<Value> {
        value
            .as_ref()
            .filter(|b| !b.is_empty())
            .map(|b| Value::String(base64::engine::general_purpose::STANDARD.encode(b)))
    }
    pub fn from(value: Option<&Value>, at: &str) -> Result<Option<Vec<u8>>, ConvertError> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(v) => decode_base64(v, at).map(Some),
        }
    }
}

/// `map<string, bytes>` fields (a Secret's `data`): base64 values in JSON.
pub struct B64Map;

impl B64Map {
    pub fn to(value: &BTreeMap<String, Vec<u8>>) -> Option<Value> {
        (!value.is_empty()).then(|| {
            let engine = base64::engine::general_purpose::STANDARD;
            Value::Object(
                value
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(engine.encode(v))))
                    .collect(),
            )
        })
    }
    pub fn from(
        value: Option<&Value>,
        at: &str,
    ) -> Result<BTreeMap<String, Vec<u8>>, ConvertError> {
        match value {
            None | Some(Value::Null) => Ok(BTreeMap::new()),
            Some(v) => as_object(v, at)?
                .iter()
                .map(|(k, v)| Ok((k.clone(), decode_base64(v, &format!("{at}[{k}]"))?)))
                .collect(),
        }
    }
}

fn decode_base64(value: &Value, at: &str) -> Result<Vec<u8>, ConvertError> {
    let text = value
        .as_str()
        .ok_or_else(|| wrong(at, "expected a base64 string"))?;
    // The decoder's own message quotes the offending byte: of a Secret's value, it stays out.
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| wrong(at, "illegal base64 data"))
}

/// Go's zero `time.Time` (January 1 of year 1), which marshals as these seconds.
const GO_ZERO_TIME: i64 = -62_135_596_800;

fn timestamp(
    seconds: Option<i64>,
    nanos: Option<i32>,
    at: &str,
) -> Result<DateTime<Utc>, ConvertError> {
    DateTime::from_timestamp(seconds.unwrap_or(0), nanos.unwrap_or(0).max(0) as u32)
        .ok_or_else(|| wrong(at, "time out of range"))
}

fn parse_time(value: &Value, at: &str) -> Result<(i64, i32), ConvertError> {
    let text = value
        .as_str()
        .ok_or_else(|| wrong(at, "expected an RFC 3339 time"))?;
    let t = DateTime::parse_from_rfc3339(text).map_err(|e| {
        wrong(
            at,
            format!("cannot parse {text:?} as an RFC 3339 time: {e}"),
        )
    })?;
    Ok((t.timestamp(), t.timestamp_subsec_nanos() as i32))
}

fn zero_time(seconds: Option<i64>, nanos: Option<i32>) -> bool {
    matches!(seconds, None | Some(GO_ZERO_TIME)) && nanos.unwrap_or(0) == 0
}

impl Json for meta::Time {
    fn to_json(&self, at: &str) -> Result<Value, ConvertError> {
        let t = timestamp(self.seconds, None, at)?;
        Ok(Value::String(t.to_rfc3339_opts(SecondsFormat::Secs, true)))
    }
    fn from_json(value: &Value, at: &str) -> Result<Self, ConvertError> {
        let (seconds, _) = parse_time(value, at)?;
        Ok(meta::Time {
            seconds: Some(seconds),
            nanos: Some(0),
        })
    }
    fn omit(&self) -> bool {
        zero_time(self.seconds, self.nanos)
    }
}

impl Json for meta::MicroTime {
    fn to_json(&self, at: &str) -> Result<Value, ConvertError> {
        let t = timestamp(self.seconds, self.nanos, at)?;
        Ok(Value::String(
            t.to_rfc3339_opts(SecondsFormat::Micros, true),
        ))
    }
    fn from_json(value: &Value, at: &str) -> Result<Self, ConvertError> {
        let (seconds, nanos) = parse_time(value, at)?;
        Ok(meta::MicroTime {
            seconds: Some(seconds),
            nanos: Some(nanos / 1000 * 1000),
        })
    }
    fn omit(&self) -> bool {
        zero_time(self.seconds, self.nanos)
    }
}

/// Go's `time.Duration` text ("1h2m3.5s") ⇄ nanoseconds.
impl Json for meta::Duration {
    fn to_json(&self, _: &str) -> Result<Value, ConvertError> {
        let nanos = self.duration.unwrap_or(0);
        let (sign, n) = (if nanos < 0 { "-" } else { "" }, nanos.unsigned_abs());
        let (h, m, s, frac) = (
            n / 3_600_000_000_000,
            n / 60_000_000_000 % 60,
            n / 1_000_000_000 % 60,
            n % 1_000_000_000,
        );
        let mut text = String::from(sign);
        if h > 0 {
            text.push_str(&format!("{h}h"));
        }
        if h > 0 || m > 0 {
            text.push_str(&format!("{m}m"));
        }
        let fraction = format!("{frac:09}");
        let fraction = fraction.trim_end_matches('0');
        if fraction.is_empty() {
            text.push_str(&format!("{s}s"));
        } else {
            text.push_str(&format!("{s}.{fraction}s"));
        }
        Ok(Value::String(text))
    }
    fn from_json(value: &Value, at: &str) -> Result<Self, ConvertError> {
        let text = value
            .as_str()
            .ok_or_else(|| wrong(at, "expected a duration"))?;
        let unit = regex::Regex::new(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)")
            .map_err(|e| wrong(at, e.to_string()))?;
        let (negative, body) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let mut nanos = 0f64;
        let mut consumed = 0;
        for c in unit.captures_iter(body) {
            let n: f64 = c[1]
                .parse()
                .map_err(|_| wrong(at, format!("invalid duration {text:?}")))?;
            let scale = match &c[2] {
                "ns" => 1.0,
                "us" | "µs" => 1e3,
                "ms" => 1e6,
                "s" => 1e9,
                "m" => 60e9,
                _ => 3600e9,
            };
            nanos += n * scale;
            consumed += c[0].len();
        }
        if consumed != body.len() || body.is_empty() {
            return Err(wrong(at, format!("invalid duration {text:?}")));
        }
        let nanos = nanos.round() as i64;
        Ok(meta::Duration {
            duration: Some(if negative { -nanos } else { nanos }),
        })
    }
}

/// Raw JSON carried as bytes.
fn raw_to_json(raw: &Option<Vec<u8>>, at: &str) -> Result<Value, ConvertError> {
    match raw.as_deref() {
        None | Some([]) => Ok(Value::Null),
        Some(bytes) => serde_json::from_slice(bytes)
            .map_err(|e| wrong(at, format!("the embedded object is not JSON: {e}"))),
    }
}

fn raw_from_json(value: &Value) -> Option<Vec<u8>> {
    Some(value.to_string().into_bytes())
}

impl Json for meta::FieldsV1 {
    fn to_json(&self, at: &str) -> Result<Value, ConvertError> {
        raw_to_json(&self.raw, at)
    }
    fn from_json(value: &Value, _: &str) -> Result<Self, ConvertError> {
        Ok(meta::FieldsV1 {
            raw: raw_from_json(value),
        })
    }
}

impl Json for RawExtension {
    fn to_json(&self, at: &str) -> Result<Value, ConvertError> {
        raw_to_json(&self.raw, at)
    }
    fn from_json(value: &Value, _: &str) -> Result<Self, ConvertError> {
        Ok(RawExtension {
            raw: raw_from_json(value),
        })
    }
}

impl Json for apiextensions::Json {
    fn to_json(&self, at: &str) -> Result<Value, ConvertError> {
        raw_to_json(&self.raw, at)
    }
    fn from_json(value: &Value, _: &str) -> Result<Self, ConvertError> {
        Ok(apiextensions::Json {
            raw: raw_from_json(value),
        })
    }
}

impl Json for Quantity {
    fn to_json(&self, _: &str) -> Result<Value, ConvertError> {
        Ok(Value::String(self.string.clone().unwrap_or_default()))
    }
    fn from_json(value: &Value, at: &str) -> Result<Self, ConvertError> {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err(wrong(at, "expected a quantity")),
        };
        Ok(Quantity { string: Some(text) })
    }
}

impl Json for IntOrString {
    fn to_json(&self, _: &str) -> Result<Value, ConvertError> {
        Ok(match self.r#type {
            Some(1) => Value::String(self.str_val.clone().unwrap_or_default()),
            _ => Value::from(self.int_val.unwrap_or(0)),
        })
    }
    fn from_json(value: &Value, at: &str) -> Result<Self, ConvertError> {
        match value {
            Value::String(s) => Ok(IntOrString {
                r#type: Some(1),
                int_val: None,
                str_val: Some(s.clone()),
            }),
            v => Ok(IntOrString {
                r#type: Some(0),
                int_val: Some(i32::from_json(v, at)?),
                str_val: None,
            }),
        }
    }
}

/// A SubjectAccessReview's `extra` values: a plain list of strings in JSON.
impl Json for k8s_pb::api::authorization::v1::ExtraValue {
    fn to_json(&self, at: &str) -> Result<Value, ConvertError> {
        self.items.to_json(at)
    }
    fn from_json(value: &Value, at: &str) -> Result<Self, ConvertError> {
        Ok(Self {
            items: Vec::from_json(value, at)?,
        })
    }
}

/// `items`: one schema, or a list of schemas.
impl Json for apiextensions::JsonSchemaPropsOrArray {
    fn to_json(&self, at: &str) -> Result<Value, ConvertError> {
        match &self.schema {
            Some(schema) => schema.to_json(at),
            None => self.j_son_schemas.to_json(at),
        }
    }
    fn from_json(value: &Value, at: &str) -> Result<Self, ConvertError> {
        Ok(match value {
            Value::Array(_) => Self {
                schema: None,
                j_son_schemas: Vec::from_json(value, at)?,
            },
            v => Self {
                schema: Some(Box::new(apiextensions::JsonSchemaProps::from_json(v, at)?)),
                j_son_schemas: Vec::new(),
            },
        })
    }
}

/// `additionalProperties`, `additionalItems`: a boolean or a schema.
impl Json for apiextensions::JsonSchemaPropsOrBool {
    fn to_json(&self, at: &str) -> Result<Value, ConvertError> {
        match &self.schema {
            Some(schema) => schema.to_json(at),
            None => Ok(Value::Bool(self.allows.unwrap_or(false))),
        }
    }
    fn from_json(value: &Value, at: &str) -> Result<Self, ConvertError> {
        Ok(match value {
            Value::Bool(b) => Self {
                allows: Some(*b),
                schema: None,
            },
            v => Self {
                allows: Some(true),
                schema: Some(Box::new(apiextensions::JsonSchemaProps::from_json(v, at)?)),
            },
        })
    }
}

/// `dependencies` values: a schema, or a list of property names.
impl Json for apiextensions::JsonSchemaPropsOrStringArray {
    fn to_json(&self, at: &str) -> Result<Value, ConvertError> {
        match &self.schema {
            Some(schema) => schema.to_json(at),
            None => self.property.to_json(at),
        }
    }
    fn from_json(value: &Value, at: &str) -> Result<Self, ConvertError> {
        Ok(match value {
            Value::Array(_) => Self {
                schema: None,
                property: Vec::from_json(value, at)?,
            },
            v => Self {
                schema: Some(apiextensions::JsonSchemaProps::from_json(v, at)?),
                property: Vec::new(),
            },
        })
    }
}
