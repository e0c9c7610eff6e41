//! A target's `labels` on the status page, under its name: what its alerts can be routed by
//! (they are exported on `idle_drop_target_info`). Names and values are HTML-escaped.

use std::fmt::Write;

use super::escape;
use crate::config::Labels;

/// One line with the labels; nothing for a target without any.
pub(super) fn render(page: &mut String, labels: &Labels) {
    if labels.is_empty() {
        return;
    }
    page.push_str("<p>Labels (on <code>idle_drop_target_info</code>): ");
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            page.push_str(", ");
        }
        let _ = write!(page, "<code>{}=\"{}\"</code>", escape(name), escape(value));
    }
    page.push_str("</p>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_listed_escaped_and_absent_labels_add_nothing() {
        let mut page = String::new();
        render(&mut page, &Labels::new());
        assert_eq!(page, "");
        let labels = Labels::from([
            ("team".to_string(), "pay<ments>".to_string()),
            ("app".to_string(), "check\"out".to_string()),
        ]);
        render(&mut page, &labels);
        assert_eq!(
            page,
            "<p>Labels (on <code>idle_drop_target_info</code>): <code>app=\"check&quot;out\"</code>, <code>team=\"pay&lt;ments&gt;\"</code></p>\n"
        );
    }
}
