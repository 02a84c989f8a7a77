//! Problems found in a runbook file, each with the file, line and column, a snippet and
//! a hint, rendered through miette.

use std::fmt;
use std::sync::Arc;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, SourceSpan};

use super::text::Pos;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in one file.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The file as the operator named it (or `builtin:NAME.yaml`).
    pub file: String,
    pub source: Arc<str>,
    /// Where the problem is; unknown positions point at the start of the file.
    pub pos: Pos,
    pub message: String,
    /// A short label under the snippet.
    pub label: Option<String>,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(file: &str, source: &Arc<str>, pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: file.to_owned(),
            source: Arc::clone(source),
            pos,
            message: message.into(),
            label: None,
            hint: None,
        }
    }

    pub fn warning(file: &str, source: &Arc<str>, pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(file, source, pos, message)
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `FILE:LINE:COL`.
    pub fn location(&self) -> String {
        if self.pos.is_known() {
            format!("{}:{}:{}", self.file, self.pos.line, self.pos.col)
        } else {
            self.file.clone()
        }
    }

    /// The byte span to underline: the recorded one, or the rest of the line.
    fn span(&self) -> SourceSpan {
        let src = &*self.source;
        let mut offset = self.pos.offset.min(src.len());
        if offset == 0 && self.pos.line > 1 {
            // The loader knew the line and column but not the byte offset.
            offset = line_col_offset(src, self.pos.line, self.pos.col);
        }
        while !src.is_char_boundary(offset) {
            offset -= 1;
        }
        let mut len = self.pos.len;
        if len == 0 || offset + len > src.len() {
            let rest = &src[offset..];
            len = rest.find('\n').unwrap_or(rest.len());
        }
        while !src.is_char_boundary(offset + len) {
            len -= 1;
        }
        SourceSpan::new(offset.into(), len)
    }

    /// The diagnostic as text: a `FILE:LINE:COL: severity: message` line, then miette's
    /// snippet with the label and the hint.
    pub fn render(&self, color: bool) -> String {
        let theme = if color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        let handler = GraphicalReportHandler::new_themed(theme)
            .with_width(100)
            .with_links(false)
            .with_context_lines(1);
        let mut out = String::new();
        let view = Rendered(self);
        if handler.render_report(&mut out, &view).is_err() {
            out.clear();
        }
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        format!("{}: {sev}: {}\n{out}", self.location(), self.message)
    }
}

fn line_col_offset(src: &str, line: u32, col: u32) -> usize {
    let mut offset = 0;
    for (i, l) in src.split_inclusive('\n').enumerate() {
        if i + 1 == line as usize {
            let col_bytes: usize = l
                .chars()
                .take(col.saturating_sub(1) as usize)
                .map(char::len_utf8)
                .sum();
            return offset + col_bytes;
        }
        offset += l.len();
    }
    offset.min(src.len())
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location(), self.message)
    }
}

/// The miette view of a diagnostic.
struct Rendered<'a>(&'a Diagnostic);

impl fmt::Debug for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for Rendered<'_> {}

impl miette::Diagnostic for Rendered<'_> {
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.0.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.0
            .hint
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        if self.0.source.is_empty() {
            None
        } else {
            Some(self as &dyn miette::SourceCode)
        }
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.0.source.is_empty() {
            return None;
        }
        let span = self.0.span();
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            self.0.label.clone(),
            span,
        ))))
    }
}

impl miette::SourceCode for Rendered<'_> {
    fn read_span<'b>(
        &'b self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'b> + 'b>, miette::MietteError> {
        let src: &str = &self.0.source;
        let contents = src.read_span(span, context_lines_before, context_lines_after)?;
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.0.file.clone(),
            contents.data(),
            *contents.span(),
            contents.line(),
            contents.column(),
            contents.line_count(),
        )))
    }
}
