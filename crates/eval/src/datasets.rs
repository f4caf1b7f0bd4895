//! Loaders for the public data sets in `../shared/datasets/` (see its README),
//! each into the engine's [`TrainingData`] with item locations and categories
//! where the data has them.

use flate2::read::GzDecoder;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use travelrec_engine::{ItemMeta, TrainingData, TrainingDataBuilder};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}, line {line}: {problem}")]
    Format { path: PathBuf, line: usize, problem: String },
    #[error("unknown data set `{0}`; known: {known}", known = DATASETS.join(", "))]
    Unknown(String),
}

/// The data sets `travelrec evaluate` knows.
pub const DATASETS: &[&str] =
    &["ml-100k", "ml-1m-partial", "flickr-toronto", "flickr-osaka", "flickr-glasgow", "themepark", "foursquare", "generated"];

/// One trip: a user's consecutive visits (Flickr trajectories).
#[derive(Debug, Clone, PartialEq)]
pub struct Trajectory {
    pub user: u32,
    pub items: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct EvalDataset {
    pub name: String,
    pub data: TrainingData,
    /// Only for the Flickr trajectory data.
    pub trajectories: Vec<Trajectory>,
    /// For travelrec's own synthetic data: the generator seed of this world.
    /// Each split seed of an evaluation is then a world of its own (see
    /// [`EvalDataset::for_seed`]).
    pub generator_seed: Option<u64>,
}

impl EvalDataset {
    /// The data set an evaluation with split seed `seed` runs on: this one,
    /// or for generated data the world generated with that seed. Splits in
    /// time take the same events whatever their seed, so on one generated
    /// world, averaging over seeds would average one number with itself;
    /// over worlds it says how much a result owes to the one drawn.
    pub fn for_seed(&self, seed: u64) -> Result<std::borrow::Cow<'_, EvalDataset>, LoadError> {
        match self.generator_seed {
            Some(own) if own != seed => Ok(std::borrow::Cow::Owned(generated(seed)?)),
            _ => Ok(std::borrow::Cow::Borrowed(self)),
        }
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> LoadError + '_ {
    move |source| LoadError::Io { path: path.to_path_buf(), source }
}

fn format(path: &Path, line: usize, problem: impl Into<String>) -> LoadError {
    LoadError::Format { path: path.to_path_buf(), line, problem: problem.into() }
}

pub fn load(name: &str, root: &Path) -> Result<EvalDataset, LoadError> {
    match name {
        "ml-100k" => movielens_100k(&root.join("ml-100k/u.data")),
        "ml-1m-partial" => movielens_1m(&root.join("ml-1m-partial/ratings.dat.gz")),
        "flickr-toronto" => flickr(root, "Toro", name),
        "flickr-osaka" => flickr(root, "Osak", name),
        "flickr-glasgow" => flickr(root, "Glas", name),
        "themepark" => themepark(root),
        "foursquare" => foursquare(root),
        "generated" => generated(GENERATED_SEED),
        other => Err(LoadError::Unknown(other.to_string())),
    }
}

fn lines<'a, R: Read + 'a>(path: &'a Path, reader: R) -> impl Iterator<Item = (usize, Result<String, LoadError>)> + 'a {
    BufReader::new(reader).lines().enumerate().map(move |(i, l)| (i + 1, l.map_err(io(path))))
}

/// `u.data`: `user item rating timestamp`, tab-separated. A rating is an
/// interaction of type `rating` with the rating as its value.
fn movielens_100k(path: &Path) -> Result<EvalDataset, LoadError> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut builder = TrainingDataBuilder::new();
    for (line, text) in lines(path, file) {
        let text = text?;
        let fields: Vec<&str> = text.split('\t').collect();
        let [user, item, rating, ts] = fields[..] else { return Err(format(path, line, "expected 4 tab-separated fields")) };
        let rating: f32 = rating.parse().map_err(|_| format(path, line, "rating is not a number"))?;
        let ts: i64 = ts.parse().map_err(|_| format(path, line, "timestamp is not a number"))?;
        builder.add_interaction(user, item, ts, "rating", Some(rating));
    }
    Ok(EvalDataset { name: "ml-100k".into(), data: builder.build(), trajectories: Vec::new(), generator_seed: None })
}

/// `ratings.dat.gz`: `UserID::MovieID::Rating::Timestamp`.
fn movielens_1m(path: &Path) -> Result<EvalDataset, LoadError> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut builder = TrainingDataBuilder::new();
    for (line, text) in lines(path, GzDecoder::new(file)) {
        let text = text?;
        let fields: Vec<&str> = text.split("::").collect();
        let [user, item, rating, ts] = fields[..] else { return Err(format(path, line, "expected UserID::MovieID::Rating::Timestamp")) };
        let rating: f32 = rating.parse().map_err(|_| format(path, line, "rating is not a number"))?;
        let ts: i64 = ts.parse().map_err(|_| format(path, line, "timestamp is not a number"))?;
        builder.add_interaction(user, item, ts, "rating", Some(rating));
    }
    Ok(EvalDataset { name: "ml-1m-partial".into(), data: builder.build(), trajectories: Vec::new(), generator_seed: None })
}

fn csv_reader(path: &Path, delimiter: u8) -> Result<csv::Reader<std::fs::File>, LoadError> {
    csv::ReaderBuilder::new().delimiter(delimiter).from_path(path).map_err(|e| format(path, 1, e.to_string()))
}

fn record_field<'r>(path: &Path, record: &'r csv::StringRecord, index: usize) -> Result<&'r str, LoadError> {
    let line = record.position().map_or(0, |p| p.line() as usize);
    record.get(index).ok_or_else(|| format(path, line, format!("missing column {}", index + 1)))
}

fn parse<T: std::str::FromStr>(path: &Path, record: &csv::StringRecord, index: usize) -> Result<T, LoadError> {
    let value = record_field(path, record, index)?;
    let line = record.position().map_or(0, |p| p.line() as usize);
    value.trim().parse().map_err(|_| format(path, line, format!("column {}: `{value}` is not a number", index + 1)))
}

/// The CIKM'16 Flickr trajectories: `poi-City.csv` (`poiID,poiCat,poiLon,poiLat`)
/// and `traj-City.csv` (`userID,trajID,poiID,startTime,...`), one row per visit.
fn flickr(root: &Path, city: &str, name: &str) -> Result<EvalDataset, LoadError> {
    let folder = root.join("flickr-trajectories-cikm16");
    let pois = folder.join(format!("poi-{city}.csv"));
    let mut builder = TrainingDataBuilder::new();
    for record in csv_reader(&pois, b',')?.records() {
        let record = record.map_err(|e| format(&pois, 0, e.to_string()))?;
        let id = record_field(&pois, &record, 0)?.to_string();
        let meta = ItemMeta {
            location: Some((parse(&pois, &record, 3)?, parse(&pois, &record, 2)?)),
            categories: vec![record_field(&pois, &record, 1)?.to_string()],
            ..ItemMeta::default()
        };
        builder.add_item_with_meta(&id, meta);
    }
    let visits = folder.join(format!("traj-{city}.csv"));
    let mut by_trajectory: HashMap<String, (String, Vec<(i64, String)>)> = HashMap::new();
    let mut trajectory_order = Vec::new();
    for record in csv_reader(&visits, b',')?.records() {
        let record = record.map_err(|e| format(&visits, 0, e.to_string()))?;
        let user = record_field(&visits, &record, 0)?.to_string();
        let trajectory = record_field(&visits, &record, 1)?.to_string();
        let poi = record_field(&visits, &record, 2)?.to_string();
        let start: i64 = parse(&visits, &record, 3)?;
        builder.add_interaction(&user, &poi, start, "visit", None);
        let entry = by_trajectory.entry(trajectory.clone()).or_insert_with(|| {
            trajectory_order.push(trajectory.clone());
            (user.clone(), Vec::new())
        });
        entry.1.push((start, poi));
    }
    let data = builder.build();
    let trajectories = trajectory_order
        .iter()
        .map(|t| {
            let (user, visits) = &by_trajectory[t];
            // Rows are in visit order already; keep it (some start times are bogus).
            Trajectory {
                user: data.users.get(user).expect("interned"),
                items: visits.iter().map(|(_, p)| data.items.get(p).expect("interned")).collect(),
            }
        })
        .collect();
    Ok(EvalDataset { name: name.into(), data, trajectories, generator_seed: None })
}

/// The SIGIR'17 theme park (Disney California Adventure) photos: consecutive
/// photos at the same attraction within one visit sequence are one visit.
fn themepark(root: &Path) -> Result<EvalDataset, LoadError> {
    let folder = root.join("themepark-caliAdv-sigir17");
    let pois = folder.join("POI-caliAdv.csv");
    let mut builder = TrainingDataBuilder::new();
    for record in csv_reader(&pois, b';')?.records() {
        let record = record.map_err(|e| format(&pois, 0, e.to_string()))?;
        let meta = ItemMeta {
            location: Some((parse(&pois, &record, 2)?, parse(&pois, &record, 3)?)),
            categories: (5..9).filter_map(|c| record.get(c)).filter(|c| !c.is_empty()).map(str::to_string).collect(),
            ..ItemMeta::default()
        };
        builder.add_item_with_meta(record_field(&pois, &record, 0)?, meta);
    }
    let visits = folder.join("userVisits-caliAdv-allPOI.csv");
    let mut rows: Vec<(String, String, i64, String)> = Vec::new();
    for record in csv_reader(&visits, b';')?.records() {
        let record = record.map_err(|e| format(&visits, 0, e.to_string()))?;
        rows.push((
            record_field(&visits, &record, 1)?.to_string(),
            record_field(&visits, &record, 7)?.to_string(),
            parse(&visits, &record, 2)?,
            record_field(&visits, &record, 3)?.to_string(),
        ));
    }
    rows.sort_by(|a, b| (&a.0, &a.1, a.2).cmp(&(&b.0, &b.1, b.2)));
    let mut last: Option<(&str, &str, &str)> = None;
    for (user, sequence, time, poi) in &rows {
        if last != Some((user, sequence, poi)) {
            builder.add_interaction(user, poi, *time, "visit", None);
        }
        last = Some((user, sequence, poi));
    }
    Ok(EvalDataset { name: "themepark".into(), data: builder.build(), trajectories: Vec::new(), generator_seed: None })
}

/// The generator seed of `generated` as loaded (other split seeds generate their own worlds).
const GENERATED_SEED: u64 = 42;

/// travelrec's own synthetic travel data, where the effects context should
/// find are known to exist: seasons, local events, trips that walk from
/// attraction to attraction, the user's position on events.
fn generated(seed: u64) -> Result<EvalDataset, LoadError> {
    let dir = tempfile::tempdir().map_err(io(Path::new("(temporary folder)")))?;
    let config = travelrec_datagen::GeneratorConfig {
        seed,
        interactions: 200_000,
        users: 10_000,
        items_per_city: 40,
        cities: 8,
        ..Default::default()
    };
    travelrec_datagen::generate(&config, dir.path()).map_err(|e| format(dir.path(), 0, e.to_string()))?;
    let mut builder = TrainingDataBuilder::new();
    let items = dir.path().join(travelrec_datagen::ITEMS_FILE);
    for record in csv_reader(&items, b',')?.records() {
        let record = record.map_err(|e| format(&items, 0, e.to_string()))?;
        let seasons: u16 =
            record_field(&items, &record, 7)?.split('|').filter_map(|m| m.parse::<u16>().ok()).fold(0, |bits, m| bits | 1 << (m - 1));
        let meta = ItemMeta {
            location: Some((parse(&items, &record, 5)?, parse(&items, &record, 6)?)),
            categories: vec![record_field(&items, &record, 1)?.to_string()],
            city: Some(record_field(&items, &record, 4)?.to_string()),
            season_months: seasons,
            created: parse(&items, &record, 8).ok(),
        };
        builder.add_item_with_meta(record_field(&items, &record, 0)?, meta);
    }
    let events = dir.path().join(travelrec_datagen::LOCAL_EVENTS_FILE);
    let day = |path: &Path, record: &csv::StringRecord, index: usize| -> Result<i64, LoadError> {
        let text = record_field(path, record, index)?;
        let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| format(path, 0, format!("`{text}` is not a date")))?;
        Ok(date.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp())
    };
    for record in csv_reader(&events, b',')?.records() {
        let record = record.map_err(|e| format(&events, 0, e.to_string()))?;
        let location = Some((parse(&events, &record, 4)?, parse(&events, &record, 5)?));
        builder.add_local_event(
            Some(record_field(&events, &record, 3)?),
            location,
            day(&events, &record, 6)?,
            day(&events, &record, 7)? + 86_399,
        );
    }
    let interactions = dir.path().join(travelrec_datagen::INTERACTIONS_FILE);
    for record in csv_reader(&interactions, b',')?.records() {
        let record = record.map_err(|e| format(&interactions, 0, e.to_string()))?;
        let location = record_field(&interactions, &record, 5)?
            .split_once(',')
            .and_then(|(a, b)| Some((a.parse::<f32>().ok()?, b.parse::<f32>().ok()?)));
        builder.add_located_interaction(
            record_field(&interactions, &record, 0)?,
            record_field(&interactions, &record, 1)?,
            parse(&interactions, &record, 2)?,
            record_field(&interactions, &record, 3)?,
            None,
            location,
        );
    }
    Ok(EvalDataset { name: "generated".into(), data: builder.build(), trajectories: Vec::new(), generator_seed: Some(seed) })
}

/// Foursquare US check-ins: `user poi unix_ts` and `poi lat lon`, tab-separated.
fn foursquare(root: &Path) -> Result<EvalDataset, LoadError> {
    let folder = root.join("lbsn-foursquare-us-5k");
    let mut builder = TrainingDataBuilder::new();
    let coordinates = folder.join("Foursquare_poi_coos.txt");
    let file = std::fs::File::open(&coordinates).map_err(io(&coordinates))?;
    for (line, text) in lines(&coordinates, file) {
        let text = text?;
        let fields: Vec<&str> = text.split('\t').collect();
        let [poi, lat, lon] = fields[..] else { return Err(format(&coordinates, line, "expected poi, lat, lon")) };
        let lat: f64 = lat.parse().map_err(|_| format(&coordinates, line, "latitude is not a number"))?;
        let lon: f64 = lon.parse().map_err(|_| format(&coordinates, line, "longitude is not a number"))?;
        builder.add_item_with_meta(poi, ItemMeta { location: Some((lat, lon)), ..ItemMeta::default() });
    }
    let checkins = folder.join("Foursquare_checkins.txt");
    let file = std::fs::File::open(&checkins).map_err(io(&checkins))?;
    for (line, text) in lines(&checkins, file) {
        let text = text?;
        let fields: Vec<&str> = text.split('\t').collect();
        let [user, poi, ts] = fields[..] else { return Err(format(&checkins, line, "expected user, poi, timestamp")) };
        let ts: f64 = ts.parse().map_err(|_| format(&checkins, line, "timestamp is not a number"))?;
        builder.add_interaction(user, poi, ts as i64, "checkin", None);
    }
    Ok(EvalDataset { name: "foursquare".into(), data: builder.build(), trajectories: Vec::new(), generator_seed: None })
}
