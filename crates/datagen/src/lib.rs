//! Deterministic synthetic travel data in the original demo CSV layout.
//!
//! The generator builds a small world (real cities, attractions with genres,
//! seasons and coordinates, local events) and users with hidden tastes, then
//! writes interactions shaped as trips: a user picks a destination and a time
//! of year, browses its attractions from home, then walks from attraction to
//! attraction, preferring what fits their taste, what is in season, what is
//! near, and what hosts a local event that day. Everything is drawn from one
//! seeded ChaCha stream and written with fixed formatting, so the same
//! configuration gives byte-identical files.

mod world;

pub use world::{CITIES, City, GENRES, Genre, distance_km, in_season};

use chrono::{DateTime, Datelike, NaiveDate};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// File names, the same as the original demo data (`event_data.csv`, ...), so a
/// generated folder and the original one are interchangeable.
pub const INTERACTIONS_FILE: &str = "event_data.csv";
pub const ITEMS_FILE: &str = "item_data.csv";
pub const USERS_FILE: &str = "user_data.csv";
pub const LOCAL_EVENTS_FILE: &str = "local_events.csv";
/// The users' hidden tastes, for evaluation only; never imported.
pub const USER_TASTES_FILE: &str = "hidden_user_tastes.csv";

#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    pub seed: u64,
    /// Exact number of interaction rows to write.
    pub interactions: u64,
    /// Number of users; users beyond the point where `interactions` is reached
    /// keep no history (cold users).
    pub users: u32,
    pub items_per_city: u32,
    /// How many of the built-in cities to use (at most 14).
    pub cities: usize,
    /// First and last day of the activity window (UTC).
    pub start: NaiveDate,
    pub end: NaiveDate,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            interactions: 1_000_000,
            users: 50_000,
            items_per_city: 100,
            cities: CITIES.len(),
            start: NaiveDate::from_ymd_opt(2025, 1, 1).expect("valid date"),
            end: NaiveDate::from_ymd_opt(2026, 10, 31).expect("valid date"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Summary {
    pub items: usize,
    pub users: u32,
    pub users_with_interactions: u32,
    pub interactions: u64,
    pub local_events: usize,
    pub files: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("writing generated data failed: {0}")]
    Io(#[from] io::Error),
    #[error("invalid generator configuration: {0}")]
    Config(String),
}

struct Item {
    id: u32,
    city: usize,
    genre: usize,
    latitude: f64,
    longitude: f64,
    season: Vec<u32>,
    /// Hidden intrinsic appeal (log-normal).
    appeal: f64,
    created: i64,
}

struct LocalEvent {
    kind: usize,
    city: usize,
    host_item: usize,
    start_day: i64,
    end_day: i64,
}

struct World {
    items: Vec<Item>,
    /// Item indices per city.
    by_city: Vec<Vec<usize>>,
    events: Vec<LocalEvent>,
    /// Event indices per city.
    events_by_city: Vec<Vec<usize>>,
    cities: usize,
}

const DAY: i64 = 86_400;
/// Measured average of interactions one trip produces (browsing included).
const INTERACTIONS_PER_TRIP: f64 = 55.0;

/// A pick weighs at most this many of the city's attractions (a fresh random
/// sample each time when the city has more), so generating a 100,000-item
/// catalogue stays linear in the interactions; smaller cities weigh all.
const MAX_CANDIDATES: usize = 1_000;

/// Writes the data set into `out_dir` (created if missing) and returns what it wrote.
pub fn generate(config: &GeneratorConfig, out_dir: &Path) -> Result<Summary, GenerateError> {
    if config.cities == 0 || config.cities > CITIES.len() {
        return Err(GenerateError::Config(format!("cities must be between 1 and {}, got {}", CITIES.len(), config.cities)));
    }
    if config.items_per_city < 5 {
        return Err(GenerateError::Config(format!("items_per_city must be at least 5, got {}", config.items_per_city)));
    }
    if config.users == 0 {
        return Err(GenerateError::Config("users must be at least 1".into()));
    }
    if config.end <= config.start {
        return Err(GenerateError::Config(format!("end date {} must be after start date {}", config.end, config.start)));
    }
    std::fs::create_dir_all(out_dir)?;
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let start = day_start(config.start);
    let end = day_start(config.end) + DAY;

    let world = build_world(config, &mut rng, start, end);
    let mut files = Vec::new();

    let path = out_dir.join(ITEMS_FILE);
    write_items(&world, &path)?;
    files.push(path);
    let path = out_dir.join(LOCAL_EVENTS_FILE);
    write_local_events(&world, &path)?;
    files.push(path);

    let users_path = out_dir.join(USERS_FILE);
    let tastes_path = out_dir.join(USER_TASTES_FILE);
    let interactions_path = out_dir.join(INTERACTIONS_FILE);
    let mut users_out = BufWriter::new(File::create(&users_path)?);
    let mut tastes_out = BufWriter::new(File::create(&tastes_path)?);
    let mut out = InteractionWriter::new(BufWriter::with_capacity(1 << 20, File::create(&interactions_path)?), config.interactions);
    writeln!(users_out, "USER_ID,AGE,HOME_CITY")?;
    writeln!(tastes_out, "USER_ID,FAVORITE_GENRES,TRAVEL_SEASON")?;
    out.header()?;

    let users: Vec<User> = (1..=config.users).map(|id| draw_user(&mut rng, id, config.cities)).collect();
    for user in &users {
        writeln!(users_out, "{},{},{}", user.id, user.age, csv_field(&user.home_city))?;
        writeln!(tastes_out, "{},{},{}", user.id, user.favorite_genres(), user.travel_season.name())?;
    }
    // Trips per user: Poisson with the mean that spreads the interactions over
    // all users (many take no trip and stay cold); if that falls short, random
    // users take more trips until the exact count is reached.
    let trips_per_user = config.interactions as f64 / config.users as f64 / INTERACTIONS_PER_TRIP;
    let mut trips_taken = vec![0u32; users.len()];
    for (index, user) in users.iter().enumerate() {
        if out.full() {
            break;
        }
        let trips = poisson(&mut rng, trips_per_user);
        write_trips(&world, user, &mut rng, &mut out, start, end, 1..=trips)?;
        trips_taken[index] = trips;
    }
    while !out.full() {
        let index = rng.random_range(0..users.len());
        let trip = trips_taken[index] + 1;
        write_trips(&world, &users[index], &mut rng, &mut out, start, end, trip..=trip)?;
        trips_taken[index] = trip;
    }
    let users_with_interactions = trips_taken.iter().filter(|t| **t > 0).count() as u32;
    users_out.flush()?;
    tastes_out.flush()?;
    out.out.flush()?;
    files.extend([users_path, interactions_path, tastes_path]);
    Ok(Summary {
        items: world.items.len(),
        users: config.users,
        users_with_interactions,
        interactions: out.written,
        local_events: world.events.len(),
        files,
    })
}

fn day_start(date: NaiveDate) -> i64 {
    date.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc().timestamp()
}

fn month_of(timestamp: i64) -> u32 {
    DateTime::from_timestamp(timestamp, 0).map(|t| t.month()).unwrap_or(1)
}

fn date_of(day_start: i64) -> String {
    DateTime::from_timestamp(day_start, 0).map(|t| t.format("%Y-%m-%d").to_string()).unwrap_or_default()
}

fn build_world(config: &GeneratorConfig, rng: &mut ChaCha8Rng, start: i64, end: i64) -> World {
    let unit = Normal::new(0.0, 1.0).expect("valid normal");
    let mut items = Vec::new();
    let mut by_city = vec![Vec::new(); config.cities];
    for (city_index, city) in CITIES.iter().take(config.cities).enumerate() {
        // District centres: fixed offsets from the city centre.
        let districts: Vec<(f64, f64)> = (0..city.districts.len())
            .map(|_| offset(city.latitude, city.longitude, rng.random_range(0.3..3.5), rng.random_range(0.0..std::f64::consts::TAU)))
            .collect();
        let genres: Vec<usize> = (0..GENRES.len()).filter(|&g| !GENRES[g].needs_coast || city.coastal).collect();
        for _ in 0..config.items_per_city {
            let genre = genres[rng.random_range(0..genres.len())];
            let g = &GENRES[genre];
            let (latitude, longitude) = if g.distance_km > 6.0 {
                offset(
                    city.latitude,
                    city.longitude,
                    g.distance_km * rng.random_range(0.5..1.5),
                    rng.random_range(0.0..std::f64::consts::TAU),
                )
            } else {
                let (lat, lon) = districts[rng.random_range(0..districts.len())];
                offset(lat, lon, (unit.sample(rng) * 0.7_f64).abs(), rng.random_range(0.0..std::f64::consts::TAU))
            };
            let season = jitter_season(g.season, rng);
            let appeal = (unit.sample(rng) * 0.8_f64).exp();
            // Most attractions exist from the start; some open during the window
            // and start cold.
            let created = if rng.random_bool(0.06) {
                rng.random_range(start + (end - start) * 7 / 10..end - 14 * DAY)
            } else {
                start - rng.random_range(30..3000) * DAY
            };
            by_city[city_index].push(items.len());
            items.push(Item { id: items.len() as u32 + 1, city: city_index, genre, latitude, longitude, season, appeal, created });
        }
    }

    let mut events = Vec::new();
    let first_year = DateTime::from_timestamp(start, 0).map(|t| t.year()).unwrap_or(2025);
    let last_year = DateTime::from_timestamp(end, 0).map(|t| t.year()).unwrap_or(2026);
    for (city_index, city_items) in by_city.iter().enumerate() {
        let hosts: Vec<usize> =
            city_items.iter().copied().filter(|&i| world::EVENT_HOST_GENRES.contains(&GENRES[items[i].genre].name)).collect();
        if hosts.is_empty() {
            continue;
        }
        for year in first_year..=last_year {
            for _ in 0..3 {
                let kind = rng.random_range(0..world::LOCAL_EVENT_KINDS.len());
                let (_, month, days) = world::LOCAL_EVENT_KINDS[kind];
                let month = month.unwrap_or_else(|| rng.random_range(1..=12));
                let day = rng.random_range(1..=28 - days.min(27));
                let Some(date) = NaiveDate::from_ymd_opt(year, month, day) else { continue };
                let start_day = day_start(date);
                let end_day = start_day + (days as i64 - 1) * DAY;
                if end_day < start || start_day >= end {
                    continue;
                }
                events.push(LocalEvent { kind, city: city_index, host_item: hosts[rng.random_range(0..hosts.len())], start_day, end_day });
            }
        }
    }
    let mut events_by_city = vec![Vec::new(); config.cities];
    for (index, event) in events.iter().enumerate() {
        events_by_city[event.city].push(index);
    }
    World { items, by_city, events, events_by_city, cities: config.cities }
}

/// A point `km` away from (lat, lon) in direction `angle` (radians).
fn offset(lat: f64, lon: f64, km: f64, angle: f64) -> (f64, f64) {
    let dlat = km * angle.cos() / 111.0;
    let dlon = km * angle.sin() / (111.0 * lat.to_radians().cos());
    (lat + dlat, lon + dlon)
}

fn jitter_season(season: &[u32], rng: &mut ChaCha8Rng) -> Vec<u32> {
    if season.is_empty() {
        return (1..=12).collect();
    }
    let first = season[0] as i32 + rng.random_range(-1..=1);
    let last = *season.last().expect("non-empty") as i32 + rng.random_range(-1..=1);
    (first.max(1)..=last.min(12)).map(|m| m as u32).collect()
}

fn write_items(world: &World, path: &Path) -> io::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    writeln!(out, "ITEM_ID,GENRE,DESCRIPTION,NAME,CITY,LATITUDE,LONGITUDE,SEASONS,CREATION_TIMESTAMP")?;
    // Names and adjectives come from a separate stream so that descriptions can
    // change without shifting the interactions.
    let mut words = ChaCha8Rng::seed_from_u64(0x05ee_d0f0_d35c);
    for item in &world.items {
        let city = &CITIES[item.city];
        let genre = &GENRES[item.genre];
        let district = city.districts[words.random_range(0..city.districts.len())];
        let theme = genre.themes[words.random_range(0..genre.themes.len())];
        let adjective = world::ADJECTIVES[words.random_range(0..world::ADJECTIVES.len())];
        let feature = genre.features[words.random_range(0..genre.features.len())];
        let article = if adjective.starts_with(['a', 'e', 'i', 'o', 'u']) { "An" } else { "A" };
        // Attractions far out of town are named after the city, not a district.
        let (name, place) = if genre.distance_km > 6.0 {
            (format!("{} {theme} {}", city.name, genre.noun), format!("near {}", city.name))
        } else {
            (format!("{district} {theme} {}", genre.noun), format!("in {}'s {district} district", city.name))
        };
        let description = format!("{article} {adjective} {} {place}, {feature}", genre.phrase);
        // The calendar months it is open (seasons are flipped south of the equator).
        let southern = city.southern_hemisphere();
        let seasons: Vec<String> = (1..=12).filter(|&m| in_season(&item.season, m, southern)).map(|m| m.to_string()).collect();
        writeln!(
            out,
            "{},{},{},{},{},{:.5},{:.5},{},{}",
            item.id,
            genre.name,
            csv_field(&description),
            csv_field(&name),
            csv_field(city.name),
            item.latitude,
            item.longitude,
            seasons.join("|"),
            item.created
        )?;
    }
    out.flush()
}

fn write_local_events(world: &World, path: &Path) -> io::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    writeln!(out, "LOCAL_EVENT_ID,NAME,CITY,ITEM_ID,LATITUDE,LONGITUDE,START_DATE,END_DATE")?;
    for (index, event) in world.events.iter().enumerate() {
        let item = &world.items[event.host_item];
        let city = &CITIES[event.city];
        let kind = world::LOCAL_EVENT_KINDS[event.kind].0;
        writeln!(
            out,
            "{},{},{},{},{:.5},{:.5},{},{}",
            index + 1,
            csv_field(&format!("{} {kind}", city.name)),
            csv_field(city.name),
            item.id,
            item.latitude,
            item.longitude,
            date_of(event.start_day),
            date_of(event.end_day)
        )?;
    }
    out.flush()
}

/// Quotes a CSV field when it needs it.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) { format!("\"{}\"", value.replace('"', "\"\"")) } else { value.to_string() }
}

#[derive(Clone, Copy)]
enum TravelSeason {
    Summer,
    Shoulder,
    Winter,
    Any,
}

impl TravelSeason {
    fn name(self) -> &'static str {
        match self {
            TravelSeason::Summer => "summer",
            TravelSeason::Shoulder => "shoulder",
            TravelSeason::Winter => "winter",
            TravelSeason::Any => "any",
        }
    }

    /// Relative chance of travelling in `month`.
    fn weight(self, month: u32) -> f64 {
        match (self, month) {
            (TravelSeason::Summer, 6..=8) => 3.0,
            (TravelSeason::Shoulder, 4 | 5 | 9 | 10) => 3.0,
            (TravelSeason::Winter, 11 | 12 | 1 | 2) => 3.0,
            (TravelSeason::Any, _) => 1.0,
            _ => 0.6,
        }
    }
}

struct User {
    id: u32,
    age: u32,
    home_city: String,
    home: Option<usize>,
    /// Hidden taste per genre (sums to 1).
    taste: Vec<f64>,
    travel_season: TravelSeason,
}

impl User {
    fn favorite_genres(&self) -> String {
        let mut ranked: Vec<(usize, f64)> = self.taste.iter().copied().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.iter().take(3).map(|(g, w)| format!("{}:{w:.3}", GENRES[*g].name)).collect::<Vec<_>>().join("|")
    }
}

fn draw_user(rng: &mut ChaCha8Rng, id: u32, cities: usize) -> User {
    let age = (18.0 + rng.random::<f64>().powf(1.6) * 62.0) as u32;
    let home = if rng.random_bool(0.6) { Some(rng.random_range(0..cities)) } else { None };
    let home_city = match home {
        Some(c) => CITIES[c].name.to_string(),
        None => world::OTHER_HOME_CITIES[rng.random_range(0..world::OTHER_HOME_CITIES.len())].to_string(),
    };
    let mut taste = vec![0.15; GENRES.len()];
    for boost in [3.0, 2.0, 1.2] {
        taste[rng.random_range(0..GENRES.len())] += boost;
    }
    for (g, genre) in GENRES.iter().enumerate() {
        let factor = match genre.name {
            "Nightlife" | "Theme Park" | "Beach" if age < 30 => 1.6,
            "Museum" | "Gallery" | "Garden" | "Landmark" if age > 55 => 1.5,
            "Hiking" if (25..50).contains(&age) => 1.3,
            "Nightlife" if age > 55 => 0.4,
            _ => 1.0,
        };
        taste[g] *= factor;
    }
    let total: f64 = taste.iter().sum();
    taste.iter_mut().for_each(|t| *t /= total);
    let travel_season = match rng.random_range(0..4) {
        0 => TravelSeason::Summer,
        1 => TravelSeason::Shoulder,
        2 => TravelSeason::Winter,
        _ => TravelSeason::Any,
    };
    User { id, age, home_city, home, taste, travel_season }
}

/// Writes interaction rows and stops at exactly `limit`.
struct InteractionWriter<W: Write> {
    out: W,
    written: u64,
    limit: u64,
}

impl<W: Write> InteractionWriter<W> {
    fn new(out: W, limit: u64) -> Self {
        Self { out, written: 0, limit }
    }

    fn header(&mut self) -> io::Result<()> {
        writeln!(self.out, "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,SESSION_ID,LOCATION,DEVICE")
    }

    fn full(&self) -> bool {
        self.written >= self.limit
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        user: u32,
        item: u32,
        timestamp: i64,
        event_type: &str,
        session: &str,
        location: Option<(f64, f64)>,
        device: &str,
    ) -> io::Result<()> {
        if self.full() {
            return Ok(());
        }
        self.written += 1;
        match location {
            Some((lat, lon)) => writeln!(self.out, "{user},{item},{timestamp},{event_type},{session},\"{lat:.4},{lon:.4}\",{device}"),
            None => writeln!(self.out, "{user},{item},{timestamp},{event_type},{session},,{device}"),
        }
    }
}

fn write_trips<W: Write>(
    world: &World,
    user: &User,
    rng: &mut ChaCha8Rng,
    out: &mut InteractionWriter<W>,
    start: i64,
    end: i64,
    trips: std::ops::RangeInclusive<u32>,
) -> io::Result<()> {
    let home_position = user.home.map(|c| (CITIES[c].latitude, CITIES[c].longitude));
    for trip in trips {
        if out.full() {
            break;
        }
        // When: rejection-sample a day by the user's preferred season, leaving
        // room for browsing before and a trip of up to a week.
        let trip_start = loop {
            let day = rng.random_range(start / DAY + 30..end / DAY - 7) * DAY;
            if rng.random::<f64>() * 3.0 < user.travel_season.weight(month_of(day)) {
                break day;
            }
        };
        let trip_days = rng.random_range(2..=6);
        let trip_end = trip_start + trip_days * DAY;
        // Where: popular cities, rarely home, more likely when a local event runs.
        let weights: Vec<f64> = (0..world.cities)
            .map(|c| {
                let home = if user.home == Some(c) { 0.1 } else { 1.0 };
                let event =
                    if world.events.iter().any(|e| e.city == c && e.start_day <= trip_end && e.end_day >= trip_start) { 2.5 } else { 1.0 };
                CITIES[c].popularity * home * event
            })
            .collect();
        let city = weighted_pick(rng, &weights).expect("some city has weight");
        let mut state = TripState::new(world, user, city);

        // Browsing from home before leaving — or not: many travellers open
        // the app only once they have arrived.
        let browse_sessions = if rng.random_bool(0.5) { rng.random_range(1..=3) } else { 0 };
        for session in 0..browse_sessions {
            let mut t = trip_start - rng.random_range(3..40) * DAY + rng.random_range(8..23) * 3600;
            let session_id = format!("{}-{trip}-p{session}", user.id);
            let device = if rng.random_bool(0.6) { "desktop" } else { "mobile" };
            // Only phones report where the user is.
            let home_position = if device == "mobile" { home_position } else { None };
            for _ in 0..rng.random_range(2..=6) {
                let Some(item) = state.pick(rng, t, trip_start, None) else { break };
                out.write(user.id, world.items[item].id, t, "view", &session_id, home_position, device)?;
                t += rng.random_range(20..240);
                if rng.random_bool(0.45) {
                    out.write(user.id, world.items[item].id, t, "click", &session_id, home_position, device)?;
                    t += rng.random_range(10..120);
                    if rng.random_bool(0.25) {
                        out.write(user.id, world.items[item].id, t, "watch", &session_id, home_position, device)?;
                        t += rng.random_range(60..400);
                    }
                    if state.bookable(item, trip_start) && rng.random_bool(0.15) {
                        out.write(user.id, world.items[item].id, t, "book", &session_id, home_position, device)?;
                        state.booked.push(item);
                        t += rng.random_range(30..300);
                    }
                }
                state.seen.push(item);
            }
        }

        // The trip itself: a walk from attraction to attraction each day,
        // starting near the hotel.
        let city_items = &world.by_city[city];
        let hotel = &world.items[city_items[rng.random_range(0..city_items.len())]];
        let utc_offset = (CITIES[city].longitude / 15.0).round() as i64 * 3600;
        for day in 0..trip_days {
            let mut position = (hotel.latitude, hotel.longitude);
            let mut t = trip_start + day * DAY + rng.random_range(8 * 3600..11 * 3600) - utc_offset;
            let session_id = format!("{}-{trip}-d{day}", user.id);
            for _ in 0..rng.random_range(2..=5) {
                let Some(item) = state.pick(rng, t, t, Some(position)) else { break };
                let it = &world.items[item];
                out.write(user.id, it.id, t, "view", &session_id, Some(position), "mobile")?;
                if rng.random_bool(0.5) {
                    // Compared with an alternative before deciding.
                    if let Some(other) = state.pick(rng, t, t, Some(position)) {
                        out.write(
                            user.id,
                            world.items[other].id,
                            t + rng.random_range(5..90),
                            "view",
                            &session_id,
                            Some(position),
                            "mobile",
                        )?;
                        state.seen.push(other);
                    }
                }
                t += rng.random_range(30..300);
                if rng.random_bool(0.55) {
                    out.write(user.id, it.id, t, "click", &session_id, Some(position), "mobile")?;
                    t += rng.random_range(10..200);
                }
                if rng.random_bool(0.12) {
                    out.write(user.id, it.id, t, "watch", &session_id, Some(position), "mobile")?;
                    t += rng.random_range(60..400);
                }
                if state.bookable(item, t) && !state.booked.contains(&item) && rng.random_bool(0.5) {
                    out.write(user.id, it.id, t, "book", &session_id, Some(position), "mobile")?;
                    state.booked.push(item);
                    position = (it.latitude, it.longitude);
                }
                state.seen.push(item);
                t += rng.random_range(1200..7200);
            }
        }
    }
    Ok(())
}

/// What a user has done on the current trip, and how they choose the next attraction.
struct TripState<'a> {
    world: &'a World,
    user: &'a User,
    city: usize,
    seen: Vec<usize>,
    booked: Vec<usize>,
    weights: Vec<f64>,
}

impl<'a> TripState<'a> {
    fn new(world: &'a World, user: &'a User, city: usize) -> Self {
        Self { world, user, city, seen: Vec::new(), booked: Vec::new(), weights: Vec::new() }
    }

    fn bookable(&self, item: usize, when: i64) -> bool {
        let it = &self.world.items[item];
        in_season(&it.season, month_of(when), CITIES[it.city].southern_hemisphere())
    }

    /// Draws the next attraction: taste × appeal × season of the visit ×
    /// local events on that day × nearness to `position` (during the trip).
    fn pick(&mut self, rng: &mut ChaCha8Rng, now: i64, visit_day: i64, position: Option<(f64, f64)>) -> Option<usize> {
        let all_city_items = &self.world.by_city[self.city];
        let sampled: Vec<usize>;
        let city_items: &[usize] = if all_city_items.len() > MAX_CANDIDATES {
            sampled = rand::seq::index::sample(rng, all_city_items.len(), MAX_CANDIDATES).into_iter().map(|k| all_city_items[k]).collect();
            &sampled
        } else {
            all_city_items
        };
        let month = month_of(visit_day);
        let southern = CITIES[self.city].southern_hemisphere();
        let events: Vec<usize> = self.world.events_by_city[self.city]
            .iter()
            .map(|&e| &self.world.events[e])
            .filter(|e| e.start_day <= visit_day && visit_day <= e.end_day + DAY)
            .map(|e| e.host_item)
            .collect();
        self.weights.clear();
        for &i in city_items {
            let it = &self.world.items[i];
            if it.created > now {
                self.weights.push(0.0);
                continue;
            }
            let mut w = self.user.taste[it.genre] * self.user.taste[it.genre].sqrt() * it.appeal;
            if !in_season(&it.season, month, southern) {
                w *= 0.08;
            }
            for &host_item in &events {
                let host = &self.world.items[host_item];
                if host_item == i {
                    w *= 6.0;
                } else if planar_km(host.latitude, host.longitude, it.latitude, it.longitude) < 1.0 {
                    w *= 2.0;
                }
            }
            if let Some((lat, lon)) = position {
                w *= (-planar_km(lat, lon, it.latitude, it.longitude) / 2.5).exp() + 0.03;
            }
            if self.booked.contains(&i) {
                w *= 0.03;
            } else if self.seen.contains(&i) {
                w *= 0.6;
            }
            self.weights.push(w);
        }
        weighted_pick(rng, &self.weights).map(|k| city_items[k])
    }
}

/// Distance in km for points a few km apart (equirectangular; far cheaper than haversine).
fn planar_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let dy = (lat2 - lat1) * 110.57;
    let dx = (lon2 - lon1) * 111.32 * lat1.to_radians().cos();
    (dx * dx + dy * dy).sqrt()
}

fn weighted_pick(rng: &mut ChaCha8Rng, weights: &[f64]) -> Option<usize> {
    let total: f64 = weights.iter().sum();
    if total <= 0.0 || !total.is_finite() {
        return None;
    }
    let mut target = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if target < *w {
            return Some(i);
        }
        target -= w;
    }
    weights.iter().rposition(|w| *w > 0.0)
}

/// Knuth's method; fine for the small means used here.
fn poisson(rng: &mut ChaCha8Rng, mean: f64) -> u32 {
    let limit = (-mean).exp();
    let mut product = rng.random::<f64>();
    let mut count = 0;
    while product > limit && count < 1000 {
        product *= rng.random::<f64>();
        count += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> GeneratorConfig {
        GeneratorConfig { interactions: 20_000, users: 1_000, items_per_city: 20, cities: 8, ..GeneratorConfig::default() }
    }

    #[test]
    fn same_seed_gives_byte_identical_files() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        generate(&small(), a.path()).unwrap();
        generate(&small(), b.path()).unwrap();
        for file in [INTERACTIONS_FILE, ITEMS_FILE, USERS_FILE, LOCAL_EVENTS_FILE, USER_TASTES_FILE] {
            let x = std::fs::read(a.path().join(file)).unwrap();
            let y = std::fs::read(b.path().join(file)).unwrap();
            assert!(x == y, "{file} differs between runs with the same seed");
        }
    }

    #[test]
    fn another_seed_gives_other_interactions() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        generate(&small(), a.path()).unwrap();
        generate(&GeneratorConfig { seed: 7, ..small() }, b.path()).unwrap();
        let x = std::fs::read(a.path().join(INTERACTIONS_FILE)).unwrap();
        let y = std::fs::read(b.path().join(INTERACTIONS_FILE)).unwrap();
        assert_ne!(x, y);
    }

    #[test]
    fn writes_exactly_the_requested_interactions_with_all_event_types() {
        let dir = tempfile::tempdir().unwrap();
        let summary = generate(&small(), dir.path()).unwrap();
        assert_eq!(summary.interactions, 20_000);
        let text = std::fs::read_to_string(dir.path().join(INTERACTIONS_FILE)).unwrap();
        assert_eq!(text.lines().count(), 20_001);
        for event_type in ["view", "click", "watch", "book"] {
            assert!(text.contains(&format!(",{event_type},")), "no {event_type} events");
        }
        let items = std::fs::read_to_string(dir.path().join(ITEMS_FILE)).unwrap();
        assert_eq!(items.lines().count(), 8 * 20 + 1);
        let cities: std::collections::HashSet<&str> = items.lines().skip(1).map(|l| l.split(',').nth(4).unwrap()).collect();
        assert!(cities.len() >= 8, "{cities:?}");
    }

    #[test]
    fn trips_stay_in_one_city_and_book_in_season() {
        let dir = tempfile::tempdir().unwrap();
        generate(&small(), dir.path()).unwrap();
        let mut items = std::collections::HashMap::new();
        let mut reader = csvish(&dir.path().join(ITEMS_FILE));
        reader.next();
        for row in reader {
            items.insert(row[0].clone(), (row[4].clone(), row[7].clone(), row[4].clone()));
        }
        let mut by_session: std::collections::HashMap<String, std::collections::HashSet<String>> = Default::default();
        let mut bookings = 0;
        let mut in_season_bookings = 0;
        let mut rows = csvish(&dir.path().join(INTERACTIONS_FILE));
        rows.next();
        for row in rows {
            let (city, seasons, _) = &items[&row[1]];
            by_session.entry(row[4].clone()).or_default().insert(city.clone());
            if row[3] == "book" {
                bookings += 1;
                let month = month_of(row[2].parse().unwrap());
                // SEASONS lists calendar months (already flipped south of the equator).
                let months: Vec<u32> = seasons.split('|').map(|m| m.parse().unwrap()).collect();
                if months.contains(&month) {
                    in_season_bookings += 1;
                }
            }
        }
        assert!(by_session.values().all(|cities| cities.len() == 1), "a session spans several cities");
        assert!(in_season_bookings as f64 / bookings as f64 > 0.85, "{in_season_bookings}/{bookings} bookings in season");
    }

    fn csvish(path: &Path) -> impl Iterator<Item = Vec<String>> + use<> {
        let reader = csv::ReaderBuilder::new().has_headers(false).from_path(path).unwrap();
        reader.into_records().map(|r| r.unwrap().iter().map(str::to_string).collect())
    }
}
