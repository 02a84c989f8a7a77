//! The runbook language: model, loading with source positions, validation.

pub mod action;
pub mod catalog;
pub mod diagnostic;
pub mod fieldpath;
pub mod glob;
pub mod load;
pub mod model;
pub mod shellctx;
pub mod taint;
pub mod template;
pub mod text;
pub mod validate;

pub use action::{Action, ActionSpec, Sink};
pub use diagnostic::{Diagnostic, Severity as DiagSeverity};
pub use model::{Runbook, Step};
pub use text::{Dur, Ident, Pos, Text};

/// The closest candidate to `word` by edit distance, if it is close enough to be a
/// plausible typo.
pub fn suggest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = edit_distance(word, c);
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    let limit = (word.chars().count() / 3).max(1);
    best.filter(|(d, _)| *d <= limit).map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names() {
        let names = ["control_plane", "snapshot", "bucket"];
        assert_eq!(
            suggest("contol_plane", names.into_iter()),
            Some("control_plane")
        );
        assert_eq!(suggest("bukcet", names.into_iter()), Some("bucket"));
        assert_eq!(suggest("zzz", names.into_iter()), None);
    }
}
