//! The fixed facts the generator draws from: real cities with real coordinates,
//! attraction genres with their seasons, and the words descriptions are made of.

/// A real city. Coordinates are the city centre (WGS84 degrees).
pub struct City {
    pub name: &'static str,
    pub latitude: f64,
    pub longitude: f64,
    /// Relative share of trips that go there.
    pub popularity: f64,
    /// Whether the city has beaches (beach attractions are generated only there).
    pub coastal: bool,
    /// Districts used for item locations and descriptions.
    pub districts: &'static [&'static str],
}

impl City {
    pub fn southern_hemisphere(&self) -> bool {
        self.latitude < 0.0
    }
}

pub const CITIES: &[City] = &[
    City {
        name: "Paris",
        latitude: 48.8566,
        longitude: 2.3522,
        popularity: 1.0,
        coastal: false,
        districts: &["Le Marais", "Montmartre", "Latin Quarter", "Saint-Germain", "Belleville"],
    },
    City {
        name: "London",
        latitude: 51.5072,
        longitude: -0.1276,
        popularity: 1.0,
        coastal: false,
        districts: &["Westminster", "Camden", "Southwark", "Greenwich", "Shoreditch"],
    },
    City {
        name: "Rome",
        latitude: 41.9028,
        longitude: 12.4964,
        popularity: 0.9,
        coastal: false,
        districts: &["Trastevere", "Monti", "Testaccio", "Prati", "Centro Storico"],
    },
    City {
        name: "Barcelona",
        latitude: 41.3874,
        longitude: 2.1686,
        popularity: 0.9,
        coastal: true,
        districts: &["Gothic Quarter", "Eixample", "Gràcia", "El Born", "Barceloneta"],
    },
    City {
        name: "New York",
        latitude: 40.7128,
        longitude: -74.0060,
        popularity: 0.9,
        coastal: true,
        districts: &["Midtown", "Brooklyn", "Harlem", "SoHo", "Queens"],
    },
    City {
        name: "Lisbon",
        latitude: 38.7223,
        longitude: -9.1393,
        popularity: 0.7,
        coastal: true,
        districts: &["Alfama", "Baixa", "Belém", "Bairro Alto", "Chiado"],
    },
    City {
        name: "Amsterdam",
        latitude: 52.3676,
        longitude: 4.9041,
        popularity: 0.7,
        coastal: false,
        districts: &["Jordaan", "De Pijp", "Centrum", "Oost", "Noord"],
    },
    City {
        name: "Berlin",
        latitude: 52.5200,
        longitude: 13.4050,
        popularity: 0.6,
        coastal: false,
        districts: &["Mitte", "Kreuzberg", "Prenzlauer Berg", "Charlottenburg", "Friedrichshain"],
    },
    City {
        name: "Prague",
        latitude: 50.0755,
        longitude: 14.4378,
        popularity: 0.6,
        coastal: false,
        districts: &["Malá Strana", "Staré Město", "Vinohrady", "Hradčany", "Žižkov"],
    },
    City {
        name: "Kyoto",
        latitude: 35.0116,
        longitude: 135.7681,
        popularity: 0.6,
        coastal: false,
        districts: &["Gion", "Higashiyama", "Arashiyama", "Nakagyo", "Fushimi"],
    },
    City {
        name: "Vienna",
        latitude: 48.2082,
        longitude: 16.3738,
        popularity: 0.5,
        coastal: false,
        districts: &["Innere Stadt", "Leopoldstadt", "Neubau", "Wieden", "Hietzing"],
    },
    City {
        name: "Sydney",
        latitude: -33.8688,
        longitude: 151.2093,
        popularity: 0.5,
        coastal: true,
        districts: &["The Rocks", "Bondi", "Surry Hills", "Manly", "Darling Harbour"],
    },
    City {
        name: "Cape Town",
        latitude: -33.9249,
        longitude: 18.4241,
        popularity: 0.4,
        coastal: true,
        districts: &["Bo-Kaap", "Sea Point", "Woodstock", "Camps Bay", "V&A Waterfront"],
    },
    City {
        name: "Reykjavik",
        latitude: 64.1466,
        longitude: -21.9426,
        popularity: 0.3,
        coastal: false,
        districts: &["Miðborg", "Vesturbær", "Laugardalur", "Hlíðar", "Grandi"],
    },
];

/// Home cities of users that are not destinations in the catalogue.
pub const OTHER_HOME_CITIES: &[&str] = &["Madrid", "Munich", "Chicago", "Toronto", "Seoul", "Milan", "Dublin", "Boston"];

/// An attraction genre: how it reads, when it is in season and how far from
/// the centre it lies.
pub struct Genre {
    pub name: &'static str,
    /// Months in season in the northern hemisphere (1 = January); shifted by six
    /// months in the southern hemisphere. Empty means all year.
    pub season: &'static [u32],
    /// Typical distance from the city centre, km.
    pub distance_km: f64,
    pub needs_coast: bool,
    /// Name parts: "<district> <theme> <noun>".
    pub themes: &'static [&'static str],
    pub noun: &'static str,
    /// How a description names it: "a <adjective> <phrase>".
    pub phrase: &'static str,
    pub features: &'static [&'static str],
}

pub const GENRES: &[Genre] = &[
    Genre {
        name: "Museum",
        phrase: "museum",
        season: &[],
        distance_km: 2.5,
        needs_coast: false,
        themes: &["Maritime", "Modern Art", "History", "Science", "Design", "Archaeology", "Natural History", "Photography"],
        noun: "Museum",
        features: &["with a rooftop café", "known for its rotating exhibitions", "housed in a former palace", "with free entry on Sundays"],
    },
    Genre {
        name: "Gallery",
        phrase: "gallery",
        season: &[],
        distance_km: 2.5,
        needs_coast: false,
        themes: &["Contemporary", "Print", "Street Art", "Sculpture", "Old Masters"],
        noun: "Gallery",
        features: &["showing local artists", "in a converted warehouse", "with late opening on Fridays"],
    },
    Genre {
        name: "Landmark",
        phrase: "landmark",
        season: &[],
        distance_km: 2.0,
        needs_coast: false,
        themes: &["Clock", "Old Town", "Royal", "Harbour", "Cathedral"],
        noun: "Tower",
        features: &["that defines the skyline", "with a guided climb to the top", "lit up every evening"],
    },
    Genre {
        name: "Castle",
        phrase: "castle",
        season: &[],
        distance_km: 4.0,
        needs_coast: false,
        themes: &["Hilltop", "Medieval", "Royal", "Old"],
        noun: "Castle",
        features: &["with views over the whole city", "with costumed guided tours", "surrounded by old walls"],
    },
    Genre {
        name: "Park",
        phrase: "park",
        season: &[4, 5, 6, 7, 8, 9, 10],
        distance_km: 3.0,
        needs_coast: false,
        themes: &["Riverside", "Botanical", "Royal", "City", "Lakeside"],
        noun: "Park",
        features: &["perfect for a picnic", "with rowing boats in summer", "with open-air concerts"],
    },
    Genre {
        name: "Garden",
        phrase: "garden",
        season: &[4, 5, 6, 7, 8, 9],
        distance_km: 3.5,
        needs_coast: false,
        themes: &["Rose", "Japanese", "Palace", "Herb"],
        noun: "Garden",
        features: &["in full bloom in spring", "with a tea house", "with hidden fountains"],
    },
    Genre {
        name: "Beach",
        phrase: "beach",
        season: &[6, 7, 8, 9],
        distance_km: 9.0,
        needs_coast: true,
        themes: &["Golden", "Surf", "Sunset", "Family"],
        noun: "Beach",
        features: &["with lifeguards in summer", "popular with surfers", "with beach bars at sunset"],
    },
    Genre {
        name: "Hiking",
        phrase: "hiking trail",
        season: &[5, 6, 7, 8, 9, 10],
        distance_km: 18.0,
        needs_coast: false,
        themes: &["Ridge", "Forest", "River", "Waterfall"],
        noun: "Trail",
        features: &["with a steep climb and great views", "through ancient woodland", "ending at a mountain hut"],
    },
    Genre {
        name: "Viewpoint",
        phrase: "viewpoint",
        season: &[],
        distance_km: 3.0,
        needs_coast: false,
        themes: &["Sunset", "Hilltop", "Panoramic", "Rooftop"],
        noun: "Viewpoint",
        features: &["best at sunset", "with a kiosk serving coffee", "reached by a funicular"],
    },
    Genre {
        name: "Zoo",
        phrase: "zoo",
        season: &[3, 4, 5, 6, 7, 8, 9, 10, 11],
        distance_km: 5.0,
        needs_coast: false,
        themes: &["City", "Safari", "Children's"],
        noun: "Zoo",
        features: &["with a petting farm", "with feeding shows every hour", "home to rare big cats"],
    },
    Genre {
        name: "Aquarium",
        phrase: "aquarium",
        season: &[],
        distance_km: 3.5,
        needs_coast: false,
        themes: &["Ocean", "Sea Life", "River"],
        noun: "Aquarium",
        features: &["with a walk-through shark tunnel", "great on rainy days", "with a touch pool"],
    },
    Genre {
        name: "Theme Park",
        phrase: "theme park",
        season: &[4, 5, 6, 7, 8, 9, 10],
        distance_km: 12.0,
        needs_coast: false,
        themes: &["Adventure", "Fairy Tale", "Water", "Thrill"],
        noun: "Park",
        features: &["with record-breaking roller coasters", "for the whole family", "with a water park next door"],
    },
    Genre {
        name: "Food Market",
        phrase: "food market",
        season: &[],
        distance_km: 1.5,
        needs_coast: false,
        themes: &["Central", "Covered", "Street Food", "Farmers'"],
        noun: "Market",
        features: &["with dozens of local stalls", "famous for its pastries", "busiest on Saturday mornings"],
    },
    Genre {
        name: "Nightlife",
        phrase: "nightlife spot",
        season: &[],
        distance_km: 1.5,
        needs_coast: false,
        themes: &["Jazz", "Cocktail", "Techno", "Rooftop"],
        noun: "Club",
        features: &["open until dawn", "with live music every night", "hidden behind an unmarked door"],
    },
];

pub const ADJECTIVES: &[&str] =
    &["historic", "family-friendly", "hidden", "lively", "quiet", "iconic", "charming", "popular", "little-known", "spectacular"];

/// Names of recurring local events; `None` month means any month.
pub const LOCAL_EVENT_KINDS: &[(&str, Option<u32>, u32)] = &[
    // (name suffix, fixed month, length in days)
    ("Jazz Festival", None, 5),
    ("Food Week", None, 7),
    ("Festival of Lights", Some(11), 10),
    ("Summer Music Festival", Some(7), 4),
    ("Christmas Market", Some(12), 24),
    ("Film Festival", None, 8),
    ("Marathon Weekend", None, 2),
    ("Spring Flower Show", Some(4), 6),
];

/// Genres that can host a local event.
pub const EVENT_HOST_GENRES: &[&str] = &["Park", "Landmark", "Food Market", "Nightlife", "Garden", "Museum"];

/// Whether `month` (1..=12) is in `season` for a city in the given hemisphere.
pub fn in_season(season: &[u32], month: u32, southern: bool) -> bool {
    if season.is_empty() {
        return true;
    }
    let month = if southern { (month + 5) % 12 + 1 } else { month };
    season.contains(&month)
}

/// Great-circle distance in km (haversine).
pub fn distance_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0 * a.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn southern_hemisphere_shifts_seasons_by_six_months() {
        let summer = &[6, 7, 8];
        assert!(in_season(summer, 7, false));
        assert!(!in_season(summer, 1, false));
        assert!(in_season(summer, 1, true));
        assert!(!in_season(summer, 7, true));
    }

    #[test]
    fn distance_between_paris_and_london_is_about_344_km() {
        let d = distance_km(48.8566, 2.3522, 51.5072, -0.1276);
        assert!((d - 344.0).abs() < 5.0, "{d}");
    }
}
