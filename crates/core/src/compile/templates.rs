//! Templates: header lines and rewrite strings with `{placeholders}`.

use toml::Spanned;

use super::Compiler;
use crate::sip::PROTECTED_HEADERS;
use crate::template::Template;

impl Compiler<'_> {
    pub(super) fn template(
        &mut self,
        i: usize,
        s: &Spanned<String>,
        allow_trunk: bool,
    ) -> Option<Template> {
        match Template::parse(s.get_ref(), allow_trunk) {
            Ok(t) => Some(t),
            Err(e) => {
                let start = s.span().start + 1 + e.offset;
                self.err(&(i, start..start + 1), e.message);
                None
            }
        }
    }

    pub(super) fn header(&mut self, i: usize, s: &Spanned<String>) -> Option<Template> {
        let text = s.get_ref();
        let at = (i, s.span());
        let Some((name, value)) = text.split_once(':') else {
            self.err(
                &at,
                format!("header {text:?} must be a complete `Name: value` line"),
            );
            return None;
        };
        if !crate::uri::is_token(name) {
            self.err(
                &at,
                format!("header name {name:?} must be a SIP token (letters, digits, `-`, `.`, `!`, `%`, `*`, `_`, `+`, `` ` ``, `'`, `~`) with no spaces"),
            );
            return None;
        }
        if PROTECTED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            self.err(
                &at,
                format!("header `{name}` may not be set by a route: Kamailio manages Via, From, To, Call-ID, CSeq, Contact, Content-Length, Content-Type, Max-Forwards, Route and Record-Route (use rewrite for From and To)"),
            );
            return None;
        }
        if value.contains(['\r', '\n', '\0']) {
            self.err(&at, "header value may not contain CR, LF or NUL");
            return None;
        }
        let t = self.template(i, s, true)?;
        Some(t)
    }
}
