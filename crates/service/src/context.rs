//! Request context (`LOCATION`, `CITY`, `DATE`, `DEVICE`), validated, and
//! turned into the engine's [`Context`] with the user's last known location
//! and the local events running at that moment.

use crate::error::{Result, ServiceError};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use travelrec_engine::{ItemMeta, LocalEvent};

/// The context keys a request may give (case-insensitive).
pub const CONTEXT_KEYS: [&str; 4] = ["LOCATION", "CITY", "DATE", "DEVICE"];

/// What a request says about the user's situation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestContext {
    pub location: Option<(f64, f64)>,
    pub city: Option<String>,
    /// The moment recommended for (Unix seconds).
    pub time: Option<i64>,
    /// Whether `time` includes a time of day (a bare date does not).
    pub has_hour: bool,
    pub device: Option<String>,
}

/// `"38.71,-9.14"` as a coordinate pair on Earth.
pub fn parse_location(key: &str, value: &str) -> Result<(f64, f64)> {
    let bad =
        |why: &str| ServiceError::invalid(format!("context {key} `{value}`: {why}; give \"latitude,longitude\", e.g. \"38.71,-9.14\""));
    let (lat, lon) = value.split_once(',').ok_or_else(|| bad("expected two numbers separated by a comma"))?;
    let lat: f64 = lat.trim().parse().map_err(|_| bad("the latitude is not a number"))?;
    let lon: f64 = lon.trim().parse().map_err(|_| bad("the longitude is not a number"))?;
    if !(-90.0..=90.0).contains(&lat) {
        return Err(bad(&format!("latitude {lat} is not between -90 and 90")));
    }
    if !(-180.0..=180.0).contains(&lon) {
        return Err(bad(&format!("longitude {lon} is not between -180 and 180")));
    }
    Ok((lat, lon))
}

/// A date (`2026-07-14`, noon UTC, no time of day), a date and time
/// (`2026-07-14T21:30`, UTC), or RFC 3339 (`2026-07-14T21:30:00+01:00`).
fn parse_date(value: &str) -> Result<(i64, bool)> {
    let value = value.trim();
    if let Ok(date) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Ok((date.and_hms_opt(12, 0, 0).expect("noon exists").and_utc().timestamp(), false));
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(value) {
        return Ok((time.timestamp(), true));
    }
    for format in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(time) = NaiveDateTime::parse_from_str(value, format) {
            return Ok((time.and_utc().timestamp(), true));
        }
    }
    Err(ServiceError::invalid(format!("context DATE `{value}` is not a date; give YYYY-MM-DD, YYYY-MM-DDTHH:MM (UTC) or an RFC 3339 time")))
}

/// Validates a context map; unknown keys and malformed values are errors naming the key.
pub fn parse_context(map: &BTreeMap<String, String>) -> Result<RequestContext> {
    let mut context = RequestContext::default();
    for (key, value) in map {
        match key.to_ascii_uppercase().as_str() {
            "LOCATION" => context.location = Some(parse_location("LOCATION", value)?),
            "CITY" if value.trim().is_empty() => return Err(ServiceError::invalid("context CITY is empty")),
            "CITY" => context.city = Some(value.trim().to_string()),
            "DATE" => {
                let (time, has_hour) = parse_date(value)?;
                context.time = Some(time);
                context.has_hour = has_hour;
            }
            "DEVICE" => context.device = Some(value.trim().to_string()),
            _ => {
                return Err(ServiceError::invalid(format!("unknown context key `{key}`; known keys: {}", CONTEXT_KEYS.join(", "))));
            }
        }
    }
    Ok(context)
}

/// The middle of each city's attractions, by lower-case city name.
pub fn city_centres(items: &[ItemMeta]) -> HashMap<String, (f64, f64)> {
    let mut sums: HashMap<String, (f64, f64, f64)> = HashMap::new();
    for meta in items {
        if let (Some(city), Some((lat, lon))) = (&meta.city, meta.location) {
            let entry = sums.entry(city.to_lowercase()).or_default();
            *entry = (entry.0 + lat, entry.1 + lon, entry.2 + 1.0);
        }
    }
    sums.into_iter().map(|(city, (lat, lon, n))| (city, (lat / n, lon / n))).collect()
}

/// The engine's context for a request: where (LOCATION, else the CITY's
/// centre, else where the user last was), when (DATE, else now), and the
/// local events then.
pub fn engine_context(
    request: &RequestContext,
    cities: &HashMap<String, (f64, f64)>,
    last_known_location: Option<(f64, f64)>,
    local_events: &[LocalEvent],
) -> Result<travelrec_engine::Context> {
    let location = match (&request.location, &request.city) {
        (Some(location), _) => Some(*location),
        (None, Some(city)) => Some(*cities.get(&city.to_lowercase()).ok_or_else(|| {
            let mut known: Vec<&String> = cities.keys().collect();
            known.sort();
            ServiceError::invalid(format!(
                "context CITY `{city}` has no attractions with coordinates; known cities: {}",
                known.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
            ))
        })?),
        (None, None) => last_known_location,
    };
    let (time, has_hour) = match request.time {
        Some(time) => (time, request.has_hour),
        None => (Utc::now().timestamp(), true),
    };
    Ok(travelrec_engine::Context {
        location,
        time: Some(time),
        hour: has_hour.then(|| travelrec_engine::context::hour_of(time)),
        events: travelrec_engine::context::active_events(local_events, time),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn context_values_are_validated_and_name_their_key() {
        let ok = parse_context(&map(&[("location", "38.71,-9.14"), ("DATE", "2026-07-14"), ("device", "mobile")])).unwrap();
        assert_eq!(ok.location, Some((38.71, -9.14)));
        assert!(!ok.has_hour);
        let err = parse_context(&map(&[("LOCATION", "200,10")])).unwrap_err();
        assert!(err.message.contains("LOCATION") && err.message.contains("latitude 200"), "{err}");
        let err = parse_context(&map(&[("DATE", "next tuesday")])).unwrap_err();
        assert!(err.message.contains("DATE `next tuesday` is not a date"), "{err}");
        let err = parse_context(&map(&[("WEATHER", "rain")])).unwrap_err();
        assert!(err.message.contains("unknown context key `WEATHER`") && err.message.contains("LOCATION, CITY, DATE, DEVICE"), "{err}");
        let timed = parse_context(&map(&[("DATE", "2026-07-14T21:30")])).unwrap();
        assert!(timed.has_hour);
    }

    #[test]
    fn a_city_becomes_its_centre_and_unknown_cities_are_named() {
        let meta = |city: &str, lat: f64| ItemMeta { city: Some(city.into()), location: Some((lat, 0.0)), ..ItemMeta::default() };
        let cities = city_centres(&[meta("Lisbon", 38.0), meta("Lisbon", 39.0), meta("Paris", 48.8)]);
        let request = RequestContext { city: Some("lisbon".into()), ..RequestContext::default() };
        let context = engine_context(&request, &cities, None, &[]).unwrap();
        assert_eq!(context.location, Some((38.5, 0.0)));
        let request = RequestContext { city: Some("Atlantis".into()), ..RequestContext::default() };
        let err = engine_context(&request, &cities, None, &[]).unwrap_err();
        assert!(err.message.contains("Atlantis") && err.message.contains("lisbon, paris"), "{err}");
        // Without LOCATION or CITY, where the user last was.
        let context = engine_context(&RequestContext::default(), &cities, Some((1.0, 2.0)), &[]).unwrap();
        assert_eq!(context.location, Some((1.0, 2.0)));
        assert!(context.hour.is_some(), "no DATE means now, with its hour");
    }
}
