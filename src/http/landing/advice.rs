//! The page's advice: the settings for each library's pool, proven ones first, ready to copy;
//! none while the measurement is unconfirmed or incomplete.

use std::fmt::Write;

use super::html::escape;
use crate::format::human;
use crate::probe::status::TargetStatus;
use crate::recipes::{self, Recipe};

/// How a stored measurement's lifetime is shown until the sentinels confirm it.
pub(super) const STORED_CONFIRMING: &str = "stored, confirming";

pub(super) fn settings(page: &mut String, s: &TargetStatus) {
    page.push_str("<h3>Settings for your pool</h3>\n");
    let recipes = s
        .measurement()
        .zip(s.knobs())
        .map(|(m, knobs)| recipes::for_path(&m, &knobs))
        .unwrap_or_default();
    let Some(lifetime) = s.recommendation.and_then(|r| r.max_idle_lifetime) else {
        page.push_str("<p>None yet: no idle connection has survived, so no lifetime is known to be safe.</p>\n");
        return;
    };
    if s.recommendation_unconfirmed {
        let _ = writeln!(
            page,
            "<p>None yet ({STORED_CONFIRMING}): the stored measurement gave a lifetime of {}, but the path may have changed since; the settings follow once the sentinels confirm it still holds.</p>",
            human(lifetime)
        );
        return;
    }
    if recipes.is_empty() {
        page.push_str("<p>None yet: the first death tells how this path drops connections.</p>\n");
        return;
    }
    let box_counts = recipes::BoxCounts::from_keepalive_rescue(s.keepalive_rescue);
    let _ = writeln!(
        page,
        "<p>Lifetime <b>{}</b> (lower bound minus the margin); {}. Each line below says whether the pool matrix ran it against the real library behind a box like this one.</p>",
        human(lifetime),
        escape(box_counts.describe())
    );
    let (proven, unproven): (Vec<&Recipe>, Vec<&Recipe>) =
        recipes.iter().partition(|r| r.is_proven());
    recipe_blocks(page, &proven);
    if !unproven.is_empty() {
        let _ = writeln!(
            page,
            "<details><summary>Not verified for this path ({}): derived from each library's source, try them behind <code>idle_drop_exporter simulate</code> first</summary>",
            unproven.len()
        );
        recipe_blocks(page, &unproven);
        page.push_str("</details>\n");
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn recipe_blocks(page: &mut String, recipes: &[&Recipe]) {
    page.push_str("<div class=\"advice\">\n");
    for r in recipes {
        let _ = writeln!(
            page,
            "<div>{}</div><div><pre class=\"copy\" title=\"{}\">{}</pre><div class=\"muted\">Why: {}.</div><div class=\"{}\">{}</div></div>",
            escape(r.title),
            escape(r.source),
            escape(&r.text),
            escape(&r.why),
            if r.is_proven() { "ok" } else { "bad" },
            escape(&capitalized(&r.proof.to_string()))
        );
    }
    page.push_str("</div>\n");
}
