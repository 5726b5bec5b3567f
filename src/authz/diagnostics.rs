//! Cedar's `miette` diagnostics turned into plain `source:line:column: message`
//! records that an API response, a log line and the CLI can all show.

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Where the text came from: a file path, or `api:<policy id>`, or `schema`.
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_id: Option<String>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source)?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, ":{line}:{column}")?;
        }
        if let Some(id) = &self.policy_id {
            write!(f, " [{id}]")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// One record per labelled span of `diag` (or one without position), with
/// the help text appended.
pub(crate) fn from_miette(
    diag: &dyn miette::Diagnostic,
    source: &str,
    text: Option<&str>,
    policy_id: Option<String>,
) -> Vec<Diagnostic> {
    let mut message = diag.to_string();
    if let Some(help) = diag.help() {
        message.push_str(" (");
        message.push_str(&help.to_string());
        message.push(')');
    }
    let offsets: Vec<usize> = diag
        .labels()
        .map(|labels| labels.map(|l| l.offset()).collect())
        .unwrap_or_default();
    let position = |offset: usize| text.map(|t| line_column(t, offset));
    match offsets.first() {
        Some(&offset) => {
            let (line, column) = position(offset).unzip();
            vec![Diagnostic {
                source: source.to_owned(),
                line,
                column,
                policy_id,
                message,
            }]
        }
        None => vec![Diagnostic {
            source: source.to_owned(),
            line: None,
            column: None,
            policy_id,
            message,
        }],
    }
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::line_column;

    #[test]
    fn offsets_map_to_one_based_lines_and_columns() {
        let text = "ab\ncde\nf";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 4), (2, 2));
        assert_eq!(line_column(text, 7), (3, 1));
        assert_eq!(line_column(text, 999), (3, 2));
    }
}
