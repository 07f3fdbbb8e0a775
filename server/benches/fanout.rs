//! The hot path of a publish: every client's batch after one new tick. Clients of all
//! symbols share one frame; clients with a filter each get their own, copied from the
//! pre-encoded ticks. `just bench` runs this with `--quick`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use prometheus_client::metrics::counter::Counter;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tickscope::feed::encode::Framing;
use tickscope::feed::symbols::{SymbolFilter, Universe};
use tickscope::feed::{Feed, Subscription, TickDraft};

const SYMBOLS: u16 = 12;

fn feed() -> Feed {
    let universe = Universe::generate(SYMBOLS, &mut StdRng::seed_from_u64(1));
    Feed::new(
        Arc::new(universe),
        100_000,
        0,
        Counter::default(),
        Counter::default(),
    )
}

fn draft(n: u64) -> TickDraft {
    let price = 100.0 + (n % 100) as f64 / 100.0;
    TickDraft {
        symbol_id: (n % u64::from(SYMBOLS)) as u16,
        price,
        bid: price - 0.01,
        ask: price + 0.01,
        volume: 300,
    }
}

/// One publish, then every client takes its frame.
fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish_and_fan_out");
    for clients in [100, 1000, 10_000] {
        group.throughput(Throughput::Elements(clients as u64));
        for (name, filter) in [
            ("shared_frame", SymbolFilter::All),
            (
                "frame_per_client",
                SymbolFilter::only(0..SYMBOLS, SYMBOLS as usize),
            ),
        ] {
            let feed = feed();
            feed.publish(&[draft(0)]);
            let mut subscriptions: Vec<_> = (0..clients)
                .map(|_| Subscription::new(&feed, filter.clone(), None))
                .collect();
            let mut n = 1;
            group.bench_function(BenchmarkId::new(name, clients), |b| {
                b.iter(|| {
                    feed.publish(&[draft(n)]);
                    n += 1;
                    for subscription in &mut subscriptions {
                        black_box(subscription.next_frame(&feed, Framing::WebSocket, 1000));
                    }
                });
            });
        }
    }
    group.finish();
}

/// Framing a batch of pre-encoded ticks for one client (a filter that passes every symbol, so
/// nothing is shared): the work a shared frame saves each client.
fn framing(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_a_batch");
    for ticks in [1u64, 10, 100] {
        let feed = feed();
        feed.publish(&(0..ticks).map(draft).collect::<Vec<_>>());
        group.throughput(Throughput::Elements(ticks));
        group.bench_function(BenchmarkId::from_parameter(ticks), |b| {
            b.iter(|| {
                let mut subscription =
                    Subscription::new(&feed, SymbolFilter::only([0], 12), Some(0));
                black_box(subscription.next_frame(&feed, Framing::WebSocket, 1000))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, fan_out, framing);
criterion_main!(benches);
