//! One direction of an emulated link, as pure scheduling: a packet goes in at some instant and
//! comes out at a later one, or not at all. No I/O and no clock of its own, so its behaviour is
//! tested with made-up instants.
//!
//! A packet meets, in order (mahimahi stacks the same stages as nested shells: loss, then a
//! link queue, then delay):
//! 1. **loss**, random or bursty (Gilbert-Elliott);
//! 2. **the bottleneck**: a drop-tail queue of `queue_bytes` in front of a link of
//!    `rate_kbit`, which sends one packet after another, each taking its size over the rate;
//! 3. **propagation**: the one-way delay plus a jitter. Jitter on a real path is mostly
//!    queueing, so packets sent close together see nearly the same delay: the offset is drawn
//!    from a normal distribution every [`JITTER_STEP`] and runs linearly between draws.
//!    Packets keep their order (no packet leaves before the one sent ahead of it), and since
//!    the offset rarely falls faster than time passes, that holds the mean delay where the
//!    profile puts it. Asked to reorder, each packet draws its own offset instead.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use tickscope_shared::lab::{Direction, Loss};

/// How often the jitter offset is drawn anew.
pub const JITTER_STEP: Duration = Duration::from_millis(20);

/// What became of a packet handed to [`Link::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// It comes out at this instant.
    Leaves(Instant),
    /// The loss model took it.
    Lost,
    /// The bottleneck's queue was full.
    Dropped,
}

/// Counts since the link was made.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub packets: u64,
    pub bytes: u64,
    pub lost: u64,
    pub dropped: u64,
}

/// A packet waiting for its time.
pub struct Queued {
    pub leaves: Instant,
    pub order: u64,
    pub packet: Vec<u8>,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.leaves, self.order) == (other.leaves, other.order)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.leaves, self.order).cmp(&(other.leaves, other.order))
    }
}

/// One direction: packets in, packets out when their time comes.
pub struct Link {
    spec: Direction,
    reorder: bool,
    rng: StdRng,
    /// Gilbert-Elliott's state, and when its spell ends.
    bad: bool,
    spell_ends: Option<Instant>,
    /// When the bottleneck finishes sending what it has.
    busy_until: Option<Instant>,
    /// When the last packet leaves (packets keep their order unless `reorder`).
    last_leaves: Option<Instant>,
    queue: BinaryHeap<Reverse<Queued>>,
    order: u64,
    counts: Counts,
    /// The jitter offset's last draw and the next one, in milliseconds, with their instants.
    jitter: Option<[(Instant, f64); 2]>,
}

impl Link {
    pub fn new(spec: Direction, seed: u64) -> Self {
        Self {
            spec,
            reorder: false,
            rng: StdRng::seed_from_u64(seed),
            bad: false,
            spell_ends: None,
            busy_until: None,
            last_leaves: None,
            queue: BinaryHeap::new(),
            order: 0,
            counts: Counts::default(),
            jitter: None,
        }
    }

    /// Lets jitter reorder packets, as a real path sometimes does.
    pub fn with_reordering(mut self) -> Self {
        self.reorder = true;
        self
    }

    /// From now on, packets meet `spec`; those already inside keep their times.
    pub fn set(&mut self, spec: Direction) {
        self.spec = spec;
        self.bad = false;
        self.spell_ends = None;
    }

    pub fn spec(&self) -> &Direction {
        &self.spec
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// A packet enters at `now`.
    pub fn send(&mut self, now: Instant, packet: Vec<u8>) -> Fate {
        let fate = self.schedule(now, packet.len() as u64);
        if let Fate::Leaves(leaves) = fate {
            self.order += 1;
            self.queue.push(Reverse(Queued {
                leaves,
                order: self.order,
                packet,
            }));
        }
        fate
    }

    /// The fate of a packet of `size` bytes entering at `now`, counted, without keeping the
    /// packet: for a relay that holds the packets of many links in one queue.
    pub fn schedule(&mut self, now: Instant, size: u64) -> Fate {
        if self.lose(now) {
            self.counts.lost += 1;
            return Fate::Lost;
        }
        let sent = match self.spec.rate_kbit {
            None => now,
            Some(kbit) => {
                let start = self.busy_until.map_or(now, |busy| busy.max(now));
                let backlog = start.duration_since(now);
                let backlog_bytes = backlog.as_secs_f64() * kbit as f64 * 1000.0 / 8.0;
                if backlog_bytes + size as f64 > self.spec.queue_bytes as f64 {
                    self.counts.dropped += 1;
                    return Fate::Dropped;
                }
                let done =
                    start + Duration::from_secs_f64(size as f64 * 8.0 / (kbit as f64 * 1000.0));
                self.busy_until = Some(done);
                done
            }
        };
        let mut leaves = sent + self.delay(now);
        if !self.reorder
            && let Some(last) = self.last_leaves
        {
            leaves = leaves.max(last);
        }
        self.last_leaves = Some(leaves);
        self.counts.packets += 1;
        self.counts.bytes += size;
        Fate::Leaves(leaves)
    }

    /// Whether the link holds nothing and has nothing scheduled after `now`.
    pub fn idle_at(&self, now: Instant) -> bool {
        self.queue.is_empty() && self.last_leaves.is_none_or(|last| last <= now)
    }

    /// When the next packet is due, if any is inside.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse(queued)| queued.leaves)
    }

    /// The next packet due at or before `now`.
    pub fn take_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.next_due()? > now {
            return None;
        }
        self.queue.pop().map(|Reverse(queued)| queued.packet)
    }

    /// Packets inside, not yet out.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    fn lose(&mut self, now: Instant) -> bool {
        match self.spec.loss {
            Loss::None => false,
            Loss::Random { p } => self.rng.random_bool(p.clamp(0.0, 1.0)),
            Loss::Bursty {
                good_ms,
                bad_ms,
                in_bad,
            } => {
                self.advance_spells(now, good_ms, bad_ms);
                self.bad && self.rng.random_bool(in_bad.clamp(0.0, 1.0))
            }
        }
    }

    /// Moves Gilbert-Elliott's state on to `now`: each spell lasts an exponential time of
    /// its state's mean. After a long quiet, the state starts afresh from the chain's
    /// stationary share rather than walking through every spell missed.
    fn advance_spells(&mut self, now: Instant, good_ms: f64, bad_ms: f64) {
        let spell = |bad: bool, rng: &mut StdRng| {
            let mean = if bad { bad_ms } else { good_ms }.max(0.001);
            Duration::from_secs_f64(-(1.0 - rng.random::<f64>()).ln() * mean / 1000.0)
        };
        let fresh = match self.spell_ends {
            None => true,
            Some(ends) => now.saturating_duration_since(ends) > Duration::from_secs(10),
        };
        if fresh {
            let bad_share = bad_ms / (good_ms + bad_ms).max(0.001);
            self.bad = self.rng.random_bool(bad_share.clamp(0.0, 1.0));
            self.spell_ends = Some(now + spell(self.bad, &mut self.rng));
            return;
        }
        while let Some(ends) = self.spell_ends
            && ends <= now
        {
            self.bad = !self.bad;
            self.spell_ends = Some(ends + spell(self.bad, &mut self.rng));
        }
    }

    fn delay(&mut self, now: Instant) -> Duration {
        let mut ms = self.spec.delay_ms;
        if self.spec.jitter_ms > 0.0
            && let Ok(normal) = Normal::new(0.0, self.spec.jitter_ms)
        {
            ms += if self.reorder {
                normal.sample(&mut self.rng)
            } else {
                self.smooth_jitter(now, normal)
            };
        }
        Duration::from_secs_f64(ms.max(0.0) / 1000.0)
    }

    /// The offset at `now`, linear between draws [`JITTER_STEP`] apart.
    fn smooth_jitter(&mut self, now: Instant, normal: Normal<f64>) -> f64 {
        let [mut from, mut to] = match self.jitter {
            // After a pause longer than a step, the draws start again from now.
            Some([from, to]) if now < to.0 + JITTER_STEP => [from, to],
            _ => {
                let first = (now, normal.sample(&mut self.rng));
                [first, (now + JITTER_STEP, normal.sample(&mut self.rng))]
            }
        };
        while now >= to.0 {
            from = to;
            to = (to.0 + JITTER_STEP, normal.sample(&mut self.rng));
        }
        self.jitter = Some([from, to]);
        let along = now.duration_since(from.0).as_secs_f64() / JITTER_STEP.as_secs_f64();
        from.1 + (to.1 - from.1) * along
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direction() -> Direction {
        Direction::CLEAR
    }

    fn ms(value: f64) -> Duration {
        Duration::from_secs_f64(value / 1000.0)
    }

    #[test]
    fn a_clear_link_passes_packets_at_once_and_in_order() {
        let start = Instant::now();
        let mut link = Link::new(direction(), 1);
        for byte in 0..5u8 {
            assert_eq!(link.send(start, vec![byte]), Fate::Leaves(start));
        }
        let out: Vec<_> = std::iter::from_fn(|| link.take_due(start)).collect();
        assert_eq!(out, [[0], [1], [2], [3], [4]]);
    }

    #[test]
    fn delay_holds_each_packet_for_its_time() {
        let start = Instant::now();
        let mut link = Link::new(
            Direction {
                delay_ms: 35.0,
                ..direction()
            },
            1,
        );
        link.send(start, vec![1]);
        link.send(start + ms(10.0), vec![2]);
        assert_eq!(link.next_due(), Some(start + ms(35.0)));
        assert_eq!(link.take_due(start + ms(34.9)), None);
        assert_eq!(link.take_due(start + ms(35.0)), Some(vec![1]));
        assert_eq!(link.take_due(start + ms(44.9)), None);
        assert_eq!(link.take_due(start + ms(45.0)), Some(vec![2]));
        assert_eq!(link.in_flight(), 0);
    }

    #[test]
    fn the_rate_spaces_packets_by_their_size() {
        // 8 Mbit/s: 1,000 bytes take 1 ms.
        let start = Instant::now();
        let mut link = Link::new(
            Direction {
                rate_kbit: Some(8_000),
                delay_ms: 5.0,
                queue_bytes: 100_000,
                ..direction()
            },
            1,
        );
        let fates: Vec<_> = (0..3).map(|_| link.send(start, vec![0; 1000])).collect();
        assert_eq!(
            fates,
            [1.0, 2.0, 3.0].map(|sent| Fate::Leaves(start + ms(sent + 5.0)))
        );
        // An idle link starts again from the packet's arrival.
        assert_eq!(
            link.send(start + ms(100.0), vec![0; 500]),
            Fate::Leaves(start + ms(100.5 + 5.0))
        );
    }

    #[test]
    fn a_full_queue_drops_the_newcomer() {
        // 8 Mbit/s and room for 3,000 bytes: the fourth packet sent at once finds it full.
        let start = Instant::now();
        let mut link = Link::new(
            Direction {
                rate_kbit: Some(8_000),
                queue_bytes: 3_000,
                ..direction()
            },
            1,
        );
        let fates: Vec<_> = (0..4).map(|_| link.send(start, vec![0; 1000])).collect();
        assert_eq!(fates[3], Fate::Dropped);
        assert!(
            fates[..3]
                .iter()
                .all(|fate| matches!(fate, Fate::Leaves(_)))
        );
        // One packet time later there is room for one more.
        assert!(matches!(
            link.send(start + ms(1.0), vec![0; 1000]),
            Fate::Leaves(_)
        ));
        assert_eq!(link.counts().dropped, 1);
    }

    #[test]
    fn random_loss_takes_its_share() {
        let start = Instant::now();
        let mut link = Link::new(
            Direction {
                loss: Loss::Random { p: 0.01 },
                ..direction()
            },
            7,
        );
        for _ in 0..100_000 {
            link.send(start, vec![0]);
        }
        let lost = link.counts().lost as f64 / 100_000.0;
        assert!((0.009..0.011).contains(&lost), "lost {lost}");
    }

    fn bursty() -> Loss {
        Loss::Bursty {
            good_ms: 270.0,
            bad_ms: 10.0,
            in_bad: 0.84,
        }
    }

    /// Sends a packet every `spacing_ms` for `count` packets; the fates.
    fn fates_every(loss: Loss, spacing_ms: f64, count: usize) -> Vec<Fate> {
        let start = Instant::now();
        let mut link = Link::new(
            Direction {
                loss,
                ..direction()
            },
            7,
        );
        (0..count)
            .map(|i| link.send(start + ms(i as f64 * spacing_ms), vec![0]))
            .collect()
    }

    fn lost_share(fates: &[Fate]) -> f64 {
        fates.iter().filter(|f| **f == Fate::Lost).count() as f64 / fates.len() as f64
    }

    /// The share of losses followed by another loss.
    fn loss_after_loss(fates: &[Fate]) -> f64 {
        let after: Vec<_> = fates
            .windows(2)
            .filter(|w| w[0] == Fate::Lost)
            .map(|w| w[1] == Fate::Lost)
            .collect();
        after.iter().filter(|&&lost| lost).count() as f64 / after.len() as f64
    }

    #[test]
    fn bursty_loss_takes_its_share_in_bursts_of_time() {
        assert!((bursty().share() - 0.03).abs() < 0.001);
        // A packet every millisecond for 1,000 s: losses come in runs.
        let dense = fates_every(bursty(), 1.0, 1_000_000);
        let share = lost_share(&dense);
        assert!((share - 0.03).abs() < 0.004, "lost {share}");
        let after = loss_after_loss(&dense);
        assert!(after > 0.5, "a loss followed by another {after}");
        // A packet every 300 ms: the same share, but a spell seldom takes two in a row.
        let sparse = fates_every(bursty(), 300.0, 100_000);
        let share = lost_share(&sparse);
        assert!((share - 0.03).abs() < 0.004, "lost {share}");
        let after = loss_after_loss(&sparse);
        assert!(after < 0.1, "a loss followed by another {after}");
    }

    #[test]
    fn jitter_varies_the_delay_without_reordering() {
        let start = Instant::now();
        let mut link = Link::new(
            Direction {
                delay_ms: 35.0,
                jitter_ms: 5.0,
                ..direction()
            },
            3,
        );
        let leaves: Vec<Instant> = (0..10_000)
            .map(|i| match link.send(start + ms(i as f64), vec![0]) {
                Fate::Leaves(at) => at,
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(leaves.windows(2).all(|w| w[0] <= w[1]), "kept in order");
        let delays: Vec<f64> = leaves
            .iter()
            .enumerate()
            .map(|(i, at)| at.duration_since(start).as_secs_f64() * 1000.0 - i as f64)
            .collect();
        let mean = delays.iter().sum::<f64>() / delays.len() as f64;
        assert!((34.0..36.0).contains(&mean), "mean delay {mean}");
        let deviation =
            (delays.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / delays.len() as f64).sqrt();
        // Linear between draws, the offset varies a little less than the draws themselves.
        assert!((3.0..5.5).contains(&deviation), "deviation {deviation}");
    }

    #[test]
    fn with_reordering_jitter_may_swap_packets() {
        let start = Instant::now();
        let mut link = Link::new(
            Direction {
                delay_ms: 35.0,
                jitter_ms: 5.0,
                ..direction()
            },
            3,
        )
        .with_reordering();
        for i in 0..1000u32 {
            link.send(start + ms(f64::from(i) * 0.1), i.to_be_bytes().to_vec());
        }
        let out: Vec<_> = std::iter::from_fn(|| link.take_due(start + ms(1000.0))).collect();
        assert_eq!(out.len(), 1000);
        assert!(out.windows(2).any(|w| w[0] > w[1]), "some swapped");
    }

    #[test]
    fn the_same_seed_gives_the_same_fates() {
        let spec = Direction {
            delay_ms: 10.0,
            jitter_ms: 3.0,
            loss: Loss::Random { p: 0.1 },
            ..direction()
        };
        let start = Instant::now();
        let run = || {
            let mut link = Link::new(spec, 42);
            (0..1000)
                .map(|_| link.send(start, vec![0]))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }
}
