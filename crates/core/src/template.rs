//! Templates: `"X-Route: {rule} for {from.user}"`, parsed once at load time.
//!
//! Placeholders stand for the query as received, never for a rewritten value,
//! so a template's output does not depend on the order rewrites are applied in.

use crate::candidate::Candidate;
use crate::uri::strip_ctl;

/// A value a template can insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Var {
    FromUser,
    FromDomain,
    FromDisplay,
    FromUri,
    ToUser,
    ToDomain,
    ToDisplay,
    ToUri,
    RuriUser,
    SourceIp,
    SourcePort,
    CallId,
    Rule,
    Trunk,
    /// The route's per-minute rate as written in its deck (LCR routes only).
    Rate,
    /// The prefix of that deck row, digits only.
    RatePrefix,
}

const VARS: &[(&str, Var)] = &[
    ("from.user", Var::FromUser),
    ("from.domain", Var::FromDomain),
    ("from.display", Var::FromDisplay),
    ("from.uri", Var::FromUri),
    ("to.user", Var::ToUser),
    ("to.domain", Var::ToDomain),
    ("to.display", Var::ToDisplay),
    ("to.uri", Var::ToUri),
    ("ruri.user", Var::RuriUser),
    ("source_ip", Var::SourceIp),
    ("source_port", Var::SourcePort),
    ("call_id", Var::CallId),
    ("rule", Var::Rule),
    ("trunk", Var::Trunk),
    ("rate", Var::Rate),
    ("rate_prefix", Var::RatePrefix),
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(Box<str>),
    Var(Var),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    parts: Box<[Part]>,
}

/// Where in a template string a problem is (byte offset into the string) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateError {
    pub offset: usize,
    pub message: String,
}

/// The names accepted inside `{…}`, for error messages.
pub(crate) fn var_names() -> String {
    VARS.iter()
        .map(|(n, _)| format!("{{{n}}}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Template {
    /// Parses `text`; `allow_trunk` is false where no trunk is known (rewrites).
    pub(crate) fn parse(text: &str, allow_trunk: bool) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'{' if b.get(i + 1) == Some(&b'{') => {
                    lit.push('{');
                    i += 2;
                }
                b'}' if b.get(i + 1) == Some(&b'}') => {
                    lit.push('}');
                    i += 2;
                }
                b'{' => {
                    let Some(len) = text[i + 1..].find('}') else {
                        return Err(TemplateError {
                            offset: i,
                            message: "unclosed `{` in template (write `{{` for a literal brace)"
                                .into(),
                        });
                    };
                    let name = &text[i + 1..i + 1 + len];
                    let Some(&(_, var)) = VARS.iter().find(|(n, _)| *n == name) else {
                        return Err(TemplateError {
                            offset: i,
                            message: format!(
                                "unknown placeholder `{{{name}}}`; expected one of {}",
                                var_names()
                            ),
                        });
                    };
                    if matches!(var, Var::Trunk | Var::Rate | Var::RatePrefix) && !allow_trunk {
                        return Err(TemplateError {
                            offset: i,
                            message: format!(
                                "`{{{name}}}` is only known in headers, not in rewrites"
                            ),
                        });
                    }
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit).into()));
                    }
                    parts.push(Part::Var(var));
                    i += len + 2;
                }
                b'}' => {
                    return Err(TemplateError {
                        offset: i,
                        message: "unmatched `}` in template (write `}}` for a literal brace)"
                            .into(),
                    });
                }
                _ => {
                    let ch = text[i..].chars().next().unwrap_or('\0');
                    lit.push(ch);
                    i += ch.len_utf8();
                }
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit.into()));
        }
        Ok(Template {
            parts: parts.into(),
        })
    }

    /// Whether the template uses `{trunk}`.
    #[cfg(test)]
    pub(crate) fn uses_trunk(&self) -> bool {
        self.parts.contains(&Part::Var(Var::Trunk))
    }

    /// Appends the rendering to `out`. Query values never bring CR, LF or NUL.
    pub(crate) fn render_into(
        &self,
        out: &mut String,
        cand: &Candidate<'_>,
        rule: &str,
        trunk: &str,
    ) {
        self.render_priced(out, cand, rule, trunk, ("", ""));
    }

    /// [`Template::render_into`] for a route priced by a rate deck:
    /// `rate` is `({rate}, {rate_prefix})`, both `""` outside LCR routes.
    pub(crate) fn render_priced(
        &self,
        out: &mut String,
        cand: &Candidate<'_>,
        rule: &str,
        trunk: &str,
        rate: (&str, &str),
    ) {
        for p in self.parts.iter() {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(v) => {
                    let value: &str = match v {
                        Var::FromUser => &cand.from().user,
                        Var::FromDomain => &cand.from().domain,
                        Var::FromDisplay => &cand.from().display,
                        Var::FromUri => cand.from().uri,
                        Var::ToUser => &cand.to().user,
                        Var::ToDomain => &cand.to().domain,
                        Var::ToDisplay => &cand.to().display,
                        Var::ToUri => cand.to().uri,
                        Var::RuriUser => &cand.ruri().user,
                        Var::SourceIp => cand.source_ip_text,
                        Var::SourcePort => {
                            if let Some(p) = cand.source_port {
                                use std::fmt::Write;
                                let _ = write!(out, "{p}");
                            }
                            continue;
                        }
                        Var::CallId => cand.call_id,
                        Var::Rule => rule,
                        Var::Trunk => trunk,
                        Var::Rate => rate.0,
                        Var::RatePrefix => rate.1,
                    };
                    out.push_str(&strip_ctl(value));
                }
            }
        }
    }

    /// The rendering as a new string.
    pub(crate) fn render(&self, cand: &Candidate<'_>, rule: &str, trunk: &str) -> String {
        let mut s = String::new();
        self.render_into(&mut s, cand, rule, trunk);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Query;

    #[test]
    fn parse_and_render() {
        let q = Query::from_json(
            br#"{"from_uri":"\"Al\" <sip:alice@Pbx.Example>","call_id":"c\r\n1","source_port":5060}"#,
        )
        .unwrap();
        let c = Candidate::new(&q);
        let t = Template::parse(
            "{{{from.user}}}@{from.domain} {from.display} {call_id} {source_port} {rule}/{trunk}",
            true,
        )
        .unwrap();
        assert_eq!(t.render(&c, "r", "t"), "{alice}@pbx.example Al c1 5060 r/t");
        assert!(t.uses_trunk());
    }

    #[test]
    fn errors_point_at_the_placeholder() {
        assert_eq!(Template::parse("ab {nope}", true).unwrap_err().offset, 3);
        assert!(
            Template::parse("{trunk}", false)
                .unwrap_err()
                .message
                .contains("only known")
        );
        assert_eq!(Template::parse("a {from.user", true).unwrap_err().offset, 2);
        assert_eq!(Template::parse("a }", true).unwrap_err().offset, 2);
        assert_eq!(Template::parse("é{x}", true).unwrap_err().offset, 2);
    }
}
