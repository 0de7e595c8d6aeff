//! `${VAR}`, `${VAR:-default}` and `${VAR:?message}` in job files, resolved before parsing.
//! `$$` writes a literal `$`. Values may not contain newlines, so line numbers stay true.

/// An interpolation problem at a byte offset of the original text.
#[derive(Debug, PartialEq)]
pub struct InterpolationError {
    pub offset: usize,
    pub message: String,
}

pub fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<InterpolationError>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && bytes.get(i + 1) == Some(&b'$') {
            out.push('$');
            i += 2;
            continue;
        }
        if bytes[i] == b'$' && bytes.get(i + 1) == Some(&b'{') {
            let Some(close) = text[i..].find('}') else {
                errors.push(InterpolationError {
                    offset: i,
                    message: "unclosed `${`: expected `}`".into(),
                });
                break;
            };
            let inner = &text[i + 2..i + close];
            let (name, rule) = match inner.find([':']) {
                Some(p) => (&inner[..p], Some(&inner[p..])),
                None => (inner, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                errors.push(InterpolationError {
                    offset: i,
                    message: format!("bad variable name {name:?} in `${{{inner}}}`"),
                });
            } else {
                let value = lookup(name).filter(|v| !v.is_empty());
                match (value, rule) {
                    (Some(v), _) if v.contains('\n') => errors.push(InterpolationError {
                        offset: i,
                        message: format!("environment variable {name} contains a newline, which a job file value cannot hold"),
                    }),
                    (Some(v), _) => out.push_str(&v),
                    (None, Some(r)) if r.starts_with(":-") => out.push_str(&r[2..]),
                    (None, Some(r)) if r.starts_with(":?") => {
                        let msg = if r.len() > 2 { r[2..].to_string() } else { "is required".to_string() };
                        errors.push(InterpolationError { offset: i, message: format!("environment variable {name} is not set: {msg}") });
                    }
                    (None, Some(r)) => errors.push(InterpolationError {
                        offset: i,
                        message: format!("unknown modifier {r:?} in `${{{inner}}}` (use :-default or :?message)"),
                    }),
                    (None, None) => errors.push(InterpolationError {
                        offset: i,
                        message: format!("environment variable {name} is not set (write ${{{name}:-default}} to give a default)"),
                    }),
                }
            }
            i += close + 1;
            continue;
        }
        let ch = text[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "SET").then(|| "value".to_string())
    }

    #[test]
    fn substitutes_defaults_and_literals() {
        assert_eq!(
            interpolate("a=${SET} b=${UNSET:-d} c=$$x", &env).unwrap(),
            "a=value b=d c=$x"
        );
    }

    #[test]
    fn reports_required_and_unset_variables_with_offsets() {
        let errors =
            interpolate("x = \"${UNSET:?give the password}\"\ny = \"${ALSO}\"", &env).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].offset, 5);
        assert!(errors[0].message.contains("give the password"));
        assert!(errors[1].message.contains("ALSO is not set"));
    }
}
