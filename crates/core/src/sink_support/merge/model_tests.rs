//! [`merge`] against a naive model: random change sequences on a small key space, for every
//! combination of soft deletes and history mode, compared row by row and count by count.
//!
//! The model keeps rows in a plain list and finds a key's current row by linear search, so it
//! shares none of `merge`'s indexes (hash table, lazily computed value rows, scope index).

use super::tests::{col, keys, spec, up};

/// A column as text; timestamps as their microsecond values.
fn cells(b: &RecordBatch, name: &str) -> Vec<String> {
    match [SYNCED, START, END]
        .contains(&name)
        .then(|| ts_col(b, name))
        .flatten()
    {
        Some(t) => t.values().iter().map(i64::to_string).collect(),
        None => col(b, name),
    }
}
use super::*;

/// A deterministic xorshift generator (no dependency, reproducible by seed).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

const IDS: [&str; 10] = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
const OPPS: [&str; 4] = ["o1", "o2", "o3", "o4"];

#[derive(Debug, Clone, PartialEq)]
struct Row {
    id: String,
    opp: String,
    score: i64,
    synced: i64,
    deleted: bool,
    start: i64,
    end: i64,
    active: bool,
    live: bool,
}

#[derive(Default)]
struct Model {
    rows: Vec<Row>,
    history: bool,
    soft: bool,
    stats: [u64; 4],
}

impl Model {
    fn current(&self, id: &str) -> Option<usize> {
        self.rows
            .iter()
            .position(|r| r.live && r.id == id && (!self.history || r.active))
    }

    fn delete(&mut self, i: usize, at: i64) {
        let r = &mut self.rows[i];
        let changed = if self.history {
            let was = r.active;
            if was {
                r.active = false;
                r.end = at;
                r.deleted |= self.soft;
            }
            was
        } else if self.soft {
            let was = !r.deleted;
            if was {
                r.deleted = true;
                r.synced = at;
            }
            was
        } else {
            r.live = false;
            true
        };
        if changed {
            self.stats[2] += 1;
        }
    }

    fn upsert(&mut self, id: &str, opp: &str, score: i64, at: i64) {
        let fresh = Row {
            id: id.into(),
            opp: opp.into(),
            score,
            synced: at,
            deleted: false,
            start: at,
            end: END_OF_TIME_US,
            active: true,
            live: true,
        };
        let Some(i) = self.current(id) else {
            self.stats[0] += 1;
            self.rows.push(fresh);
            return;
        };
        let old = self.rows[i].clone();
        if old.opp == opp && old.score == score && !old.deleted {
            self.stats[3] += 1;
            if self.history {
                self.rows[i].synced = at;
            } else {
                self.rows[i] = Row {
                    start: old.start,
                    ..fresh
                };
            }
            return;
        }
        self.stats[1] += 1;
        if self.history && old.start != at {
            self.rows[i].active = false;
            self.rows[i].end = at - 1_000;
            self.rows.push(fresh);
        } else {
            self.rows[i] = Row {
                start: old.start,
                ..fresh
            };
        }
    }

    fn delete_missing(&mut self, opps: Option<&[&str]>, keep: &[&str], at: i64) {
        let gone: Vec<usize> = IDS
            .iter()
            .filter(|id| !keep.contains(id))
            .filter_map(|id| self.current(id))
            .filter(|&i| opps.is_none_or(|o| o.contains(&self.rows[i].opp.as_str())))
            .collect();
        for i in gone {
            self.delete(i, at);
        }
    }

    /// The live rows as `merge` prints them, column by column.
    fn expected(&self, out: &RecordBatch) -> Vec<Vec<String>> {
        let live: Vec<&Row> = self.rows.iter().filter(|r| r.live).collect();
        let ts = |v: i64| v.to_string();
        out.schema()
            .fields()
            .iter()
            .map(|f| {
                live.iter()
                    .map(|r| match f.name().as_str() {
                        "id" => r.id.clone(),
                        "opportunity_id" => r.opp.clone(),
                        "score" => r.score.to_string(),
                        SYNCED => ts(r.synced),
                        DELETED => r.deleted.to_string(),
                        START => ts(r.start),
                        END => ts(r.end),
                        ACTIVE => r.active.to_string(),
                        other => panic!("unexpected column {other}"),
                    })
                    .collect()
            })
            .collect()
    }
}

fn run_case(seed: u64, soft: bool, history: bool) {
    let t = spec(soft, history);
    let mut rng = Rng(seed);
    let mut model = Model {
        history,
        soft,
        ..Model::default()
    };
    let mut stored: Vec<RecordBatch> = Vec::new();
    let mut at = 1_000_000;
    for commit in 0..3 {
        let mut changes = Vec::new();
        model.stats = [0; 4];
        for _ in 0..1 + rng.below(8) {
            // Two changes sometimes share a sync time (history's same-start branch).
            if rng.below(4) > 0 {
                at += 1_000_000;
            }
            match rng.below(5) {
                0 | 1 => {
                    let rows: Vec<(&str, &str, i64)> = (0..1 + rng.below(5))
                        .map(|_| (rng.pick(&IDS), rng.pick(&OPPS), rng.below(3) as i64))
                        .collect();
                    for (id, opp, score) in &rows {
                        model.upsert(id, opp, *score, at);
                    }
                    changes.push(up(&t, &rows, at));
                }
                2 => {
                    let ids: Vec<&str> = (0..1 + rng.below(3)).map(|_| rng.pick(&IDS)).collect();
                    for id in &ids {
                        if let Some(i) = model.current(id) {
                            model.delete(i, at);
                        }
                    }
                    changes.push(SinkChange {
                        change: Change::Delete {
                            table: t.name.clone(),
                            keys: keys(&ids),
                        },
                        synced_at_us: at,
                    });
                }
                n => {
                    let keep: Vec<&str> =
                        IDS.iter().copied().filter(|_| rng.below(2) == 0).collect();
                    let opps: Vec<&str> = (0..1 + rng.below(2)).map(|_| rng.pick(&OPPS)).collect();
                    let scope = if n == 3 {
                        model.delete_missing(Some(&opps), &keep, at);
                        Scope::Where {
                            column: "opportunity_id".into(),
                            values: opps.iter().map(|s| s.to_string()).collect(),
                        }
                    } else {
                        model.delete_missing(None, &keep, at);
                        Scope::All
                    };
                    changes.push(SinkChange {
                        change: Change::DeleteMissing {
                            table: t.name.clone(),
                            scope,
                            keep: keys(&keep),
                        },
                        synced_at_us: at,
                    });
                }
            }
        }
        let (out, stats) = merge(&t, &stored, &changes).unwrap();
        // The two ways of materializing the result agree (runs of rows vs row by row).
        for run_factor in [1, usize::MAX] {
            let (other, _) = merge_materialized(&t, &stored, &changes, run_factor).unwrap();
            assert_eq!(other, out, "seed {seed}, run factor {run_factor}");
        }
        let got: Vec<Vec<String>> = out
            .schema()
            .fields()
            .iter()
            .map(|f| cells(&out, f.name()))
            .collect();
        let case = format!("seed {seed}, soft {soft}, history {history}, commit {commit}");
        assert_eq!(got, model.expected(&out), "{case}: rows");
        assert_eq!(
            [
                stats.inserted,
                stats.updated,
                stats.deleted,
                stats.unchanged
            ],
            model.stats,
            "{case}: counts"
        );
        // Merged a chunk at a time (stored rows in chunks of 1, 2 and 5 rows): the same rows,
        // in another order, and the same counts.
        for size in [1, 2, 5] {
            let (parts, s) = chunked::tests::chunked(&t, &stored, &changes, size);
            assert_eq!(
                chunked::tests::sorted_rows(&parts),
                chunked::tests::sorted_rows(std::slice::from_ref(&out)),
                "{case}: chunked rows, chunks of {size}"
            );
            assert_eq!(
                [s.inserted, s.updated, s.deleted, s.unchanged],
                model.stats,
                "{case}: chunked counts, chunks of {size}"
            );
        }
        // Later commits start from this output; sometimes split over two stored batches.
        stored = if out.num_rows() > 1 && rng.below(2) == 0 {
            let half = out.num_rows() / 2;
            vec![out.slice(0, half), out.slice(half, out.num_rows() - half)]
        } else {
            vec![out]
        };
    }
}

#[test]
fn merge_agrees_with_the_naive_model() {
    for seed in 1..=300u64 {
        for soft in [false, true] {
            for history in [false, true] {
                run_case(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), soft, history);
            }
        }
    }
}
