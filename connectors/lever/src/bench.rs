//! Decode benchmark support (not part of the API): serialized Lever pages from the emulator,
//! decoded the way a sync decodes them, without HTTP.

use crate::catalog::catalog;
use crate::decode::Tables;
use crate::decode::opportunity::{Endpoint, write_children, write_opportunity};

/// The child endpoint bodies of one opportunity.
type ChildBodies = Vec<(Endpoint, Vec<u8>)>;

/// Serialized pages of an emulated account.
pub struct DecodeInput {
    /// `/opportunities?expand=applications` pages of 100.
    pages: Vec<Vec<u8>>,
    /// Per opportunity, the bodies of its nine child endpoints.
    children: Vec<(String, ChildBodies)>,
}

impl DecodeInput {
    /// Pages of an emulator with `opportunities` opportunities.
    pub fn from_emulator(opportunities: usize) -> DecodeInput {
        let emu = sluice_lever_emulator::Emulator::new(sluice_lever_emulator::EmulatorConfig {
            opportunities,
            rate_limit: None,
            ..Default::default()
        });
        let truth = emu.truth();
        let pages = truth
            .opportunities
            .chunks(100)
            .map(|c| serde_json::to_vec(&serde_json::json!({"data": c, "hasNext": true})).unwrap())
            .collect();
        let children = truth
            .children
            .iter()
            .map(|(id, c)| {
                let lists = [
                    (Endpoint::Feedback, &c.feedback),
                    (Endpoint::Notes, &c.notes),
                    (Endpoint::Offers, &c.offers),
                    (Endpoint::Interviews, &c.interviews),
                    (Endpoint::Panels, &c.panels),
                    (Endpoint::Forms, &c.forms),
                    (Endpoint::Files, &c.files),
                    (Endpoint::Resumes, &c.resumes),
                    (Endpoint::Referrals, &c.referrals),
                ];
                let v = lists
                    .into_iter()
                    .map(|(e, l)| {
                        (
                            e,
                            serde_json::to_vec(&serde_json::json!({"data": l})).unwrap(),
                        )
                    })
                    .collect();
                (id.clone(), v)
            })
            .collect();
        DecodeInput { pages, children }
    }

    /// Bytes of all pages.
    pub fn bytes(&self) -> usize {
        self.pages.iter().map(Vec::len).sum::<usize>()
            + self
                .children
                .iter()
                .flat_map(|(_, l)| l.iter().map(|(_, b)| b.len()))
                .sum::<usize>()
    }

    /// Parses and decodes every page into the 46 tables' Arrow batches, as a sync does (the
    /// children per page of 100 opportunities); returns the number of rows.
    pub fn decode_all(&self) -> usize {
        let names: Vec<&str> = catalog().iter().map(|t| t.name.as_str()).collect();
        let mut rows = 0usize;
        for p in &self.pages {
            let mut t = Tables::new(catalog().iter(), &names);
            let body = crate::json::Doc::parse(p).unwrap();
            let page = crate::http::into_page(body).unwrap();
            for o in page.data() {
                write_opportunity(&mut t, o, true);
            }
            rows += finished_rows(&mut t);
        }
        for chunk in self.children.chunks(100) {
            let mut t = Tables::new(catalog().iter(), &names);
            for (id, lists) in chunk {
                for (e, bytes) in lists {
                    let body = crate::json::Doc::parse(bytes).unwrap();
                    let page = crate::http::into_page(body).unwrap();
                    write_children(&mut t, *e, id, None, page.data());
                }
            }
            rows += finished_rows(&mut t);
        }
        rows
    }
}

/// Rows of every table built so far (taking them).
fn finished_rows(t: &mut Tables) -> usize {
    t.finish_all()
        .unwrap()
        .iter()
        .map(|(_, b)| b.num_rows())
        .sum()
}

impl DecodeInput {
    /// Parses every body once, without decoding; returns how many were JSON objects.
    pub fn parse_all(&self) -> usize {
        let pages = self.pages.iter();
        let children = self
            .children
            .iter()
            .flat_map(|(_, l)| l.iter().map(|(_, b)| b));
        pages
            .chain(children)
            .map(|b| {
                let doc = crate::json::Doc::parse(b).expect("emulator JSON");
                usize::from(doc.value().is_object())
            })
            .sum()
    }
}
