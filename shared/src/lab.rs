//! The network lab's profiles: named links, each with its figures and where they come from.
//!
//! The link emulator (`lab/`) applies them to the packets it relays, the server names the
//! active one at `/api/lab`, the page lets a person pick one, and `just bench-net` measures
//! every transport across each. Downlink is server to client, uplink client to server.

use serde::{Deserialize, Serialize};

/// How a direction loses packets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Loss {
    None,
    /// Each packet is lost on its own with this probability.
    Random {
        p: f64,
    },
    /// Gilbert-Elliott in continuous time: the path is good or bad, each state lasting an
    /// exponential time of its mean, and loses `in_bad` of the packets sent while bad (none
    /// while good), so losses come in bursts. A spell's length is time, as interference is,
    /// not a count of packets: a sparse flow (a tick every 20 ms) meets a bad spell now and
    /// then instead of for its next few packets however far apart. The long-run loss share is
    /// `in_bad · bad_ms / (good_ms + bad_ms)`.
    Bursty {
        good_ms: f64,
        bad_ms: f64,
        in_bad: f64,
    },
}

impl Loss {
    /// The long-run share of packets lost.
    pub fn share(&self) -> f64 {
        match *self {
            Loss::None => 0.0,
            Loss::Random { p } => p,
            Loss::Bursty {
                good_ms,
                bad_ms,
                in_bad,
            } => in_bad * bad_ms / (good_ms + bad_ms),
        }
    }
}

/// One direction of a link.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Direction {
    /// One-way propagation delay, milliseconds.
    pub delay_ms: f64,
    /// Standard deviation of a normal variation added to each packet's delay, milliseconds.
    /// Packets keep their order unless the emulator is asked to reorder.
    pub jitter_ms: f64,
    pub loss: Loss,
    /// Bottleneck rate, kilobits per second; `None` is unlimited.
    pub rate_kbit: Option<u64>,
    /// The drop-tail queue in front of the bottleneck, bytes.
    pub queue_bytes: u64,
}

impl Direction {
    /// A direction that adds nothing.
    pub const CLEAR: Direction = Direction {
        delay_ms: 0.0,
        jitter_ms: 0.0,
        loss: Loss::None,
        rate_kbit: None,
        queue_bytes: u64::MAX,
    };

    /// Time to put `bytes` on the wire at the bottleneck rate, milliseconds.
    pub fn serialisation_ms(&self, bytes: u64) -> f64 {
        self.rate_kbit
            .map_or(0.0, |kbit| bytes as f64 * 8.0 / kbit as f64)
    }
}

/// A named link.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Profile {
    pub name: &'static str,
    pub title: &'static str,
    /// What it emulates, in a sentence for the page.
    pub emulates: &'static str,
    /// Where its figures come from.
    pub source: &'static str,
    pub down: Direction,
    pub up: Direction,
}

impl Profile {
    /// Round-trip propagation delay, milliseconds (no jitter, no queueing).
    pub fn rtt_ms(&self) -> f64 {
        self.down.delay_ms + self.up.delay_ms
    }
}

/// Every profile, "none" first.
pub const PROFILES: &[Profile] = &[
    Profile {
        name: "none",
        title: "No emulation",
        emulates: "The relay alone: packets pass through the two TUN devices as they come.",
        source: "The baseline the others are measured against.",
        down: Direction::CLEAR,
        up: Direction::CLEAR,
    },
    Profile {
        name: "cable",
        title: "Cable",
        emulates: "A home cable line: 20 ms round trip, 50 Mbit/s down, 10 Mbit/s up, no loss.",
        source: "WebPageTest's connectivity presets (connectivity.ini.sample) give cable 28 ms \
                 RTT at 5/1 Mbit/s; cable lines sold today are faster, and this one is.",
        down: Direction {
            delay_ms: 10.0,
            jitter_ms: 0.0,
            loss: Loss::None,
            rate_kbit: Some(50_000),
            queue_bytes: 256 * 1024,
        },
        up: Direction {
            delay_ms: 10.0,
            jitter_ms: 0.0,
            loss: Loss::None,
            rate_kbit: Some(10_000),
            queue_bytes: 128 * 1024,
        },
    },
    Profile {
        name: "4g",
        title: "4G (LTE)",
        emulates: "A phone on LTE: 70 ms round trip with 5 ms of jitter on the way down, \
                   0.5% random loss, 20 Mbit/s down, 5 Mbit/s up.",
        source: "WebPageTest's LTE preset has the same 70 ms RTT \
                 (at 12 Mbit/s). The jitter is the downlink's, where the radio's scheduling \
                 and retransmissions are: with jitter both ways, no clock exchange can tell \
                 the directions apart, and the page's offset (so its lag) would be off by half \
                 their difference, a few ms either way.",
        down: Direction {
            delay_ms: 35.0,
            jitter_ms: 5.0,
            loss: Loss::Random { p: 0.005 },
            rate_kbit: Some(20_000),
            queue_bytes: 256 * 1024,
        },
        up: Direction {
            delay_ms: 35.0,
            jitter_ms: 0.0,
            loss: Loss::Random { p: 0.005 },
            rate_kbit: Some(5_000),
            queue_bytes: 128 * 1024,
        },
    },
    Profile {
        name: "3g",
        title: "3G",
        emulates: "A phone on 3G: 200 ms round trip, 1% random loss, 1.5 Mbit/s down, \
                   0.5 Mbit/s up.",
        source: "Between WebPageTest's 3G presets, which span 150 ms (fast, 1.6 Mbit/s) to \
                 400 ms (slow, 0.4 Mbit/s) RTT.",
        down: Direction {
            delay_ms: 100.0,
            jitter_ms: 0.0,
            loss: Loss::Random { p: 0.01 },
            rate_kbit: Some(1_500),
            queue_bytes: 64 * 1024,
        },
        up: Direction {
            delay_ms: 100.0,
            jitter_ms: 0.0,
            loss: Loss::Random { p: 0.01 },
            rate_kbit: Some(500),
            queue_bytes: 32 * 1024,
        },
    },
    Profile {
        name: "satellite",
        title: "Geostationary satellite",
        emulates: "A geostationary satellite link: 600 ms round trip, 10 Mbit/s down, \
                   2 Mbit/s up, no loss.",
        source: "Physics: up to the orbit (35,786 km) and back down, twice, is 477 ms at the \
                 speed of light; ground segments bring a round trip to about 600 ms.",
        down: Direction {
            delay_ms: 300.0,
            jitter_ms: 0.0,
            loss: Loss::None,
            rate_kbit: Some(10_000),
            queue_bytes: 512 * 1024,
        },
        up: Direction {
            delay_ms: 300.0,
            jitter_ms: 0.0,
            loss: Loss::None,
            rate_kbit: Some(2_000),
            queue_bytes: 256 * 1024,
        },
    },
    Profile {
        name: "wifi-lossy",
        title: "Lossy Wi-Fi",
        emulates: "A crowded Wi-Fi: 4 ms round trip, 3% loss in bursts (Gilbert-Elliott: \
                   bad spells of 10 ms on average, one every 280 ms, losing 84% of the \
                   packets inside), 30 Mbit/s each way.",
        source: "No preset has bursty loss; the burst model is Gilbert-Elliott's two states \
                 (netem's `loss gemodel` moves them per packet; here they last a time).",
        down: Direction {
            delay_ms: 2.0,
            jitter_ms: 0.0,
            loss: Loss::Bursty {
                good_ms: 270.0,
                bad_ms: 10.0,
                in_bad: 0.84,
            },
            rate_kbit: Some(30_000),
            queue_bytes: 256 * 1024,
        },
        up: Direction {
            delay_ms: 2.0,
            jitter_ms: 0.0,
            loss: Loss::Bursty {
                good_ms: 270.0,
                bad_ms: 10.0,
                in_bad: 0.84,
            },
            rate_kbit: Some(30_000),
            queue_bytes: 256 * 1024,
        },
    },
];

/// The profile of this name.
pub fn profile(name: &str) -> Option<&'static Profile> {
    PROFILES.iter().find(|profile| profile.name == name)
}

/// What `/api/lab` answers: the active profile and every one a person may pick; `active` is
/// `None` (and `profiles` empty) when the server runs without the lab.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabStatus {
    pub active: Option<String>,
    pub profiles: Vec<LabProfile>,
}

/// A profile as the page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabProfile {
    pub name: String,
    pub title: String,
    pub emulates: String,
    pub source: String,
    pub rtt_ms: f64,
}

impl From<&Profile> for LabProfile {
    fn from(profile: &Profile) -> Self {
        Self {
            name: profile.name.to_owned(),
            title: profile.title.to_owned(),
            emulates: profile.emulates.to_owned(),
            source: profile.source.to_owned(),
            rtt_ms: profile.rtt_ms(),
        }
    }
}

impl LabStatus {
    pub fn new(active: &str) -> Self {
        Self {
            active: Some(active.to_owned()),
            profiles: PROFILES.iter().map(LabProfile::from).collect(),
        }
    }

    /// The answer of a server without the lab.
    pub fn off() -> Self {
        Self {
            active: None,
            profiles: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loss_profiles_lose_what_they_say() {
        let wifi = profile("wifi-lossy").unwrap();
        assert!((wifi.down.loss.share() - 0.03).abs() < 0.001);
        assert_eq!(profile("4g").unwrap().up.loss.share(), 0.005);
    }

    #[test]
    fn round_trips_are_the_issues() {
        let rtt = |name| profile(name).unwrap().rtt_ms();
        assert_eq!(
            [
                rtt("none"),
                rtt("cable"),
                rtt("4g"),
                rtt("3g"),
                rtt("satellite")
            ],
            [0.0, 20.0, 70.0, 200.0, 600.0]
        );
        assert!(rtt("wifi-lossy") < 10.0);
    }

    #[test]
    fn names_are_unique() {
        for (index, profile) in PROFILES.iter().enumerate() {
            assert!(PROFILES[..index].iter().all(|p| p.name != profile.name));
        }
    }

    #[test]
    fn serialisation_time() {
        let cable = profile("cable").unwrap();
        assert_eq!(cable.up.serialisation_ms(1250), 1.0);
        assert_eq!(Direction::CLEAR.serialisation_ms(1500), 0.0);
    }
}
