//! JSON in one place: escaping for the documents drainit writes, and
//! reading (through serde_json) for the ones it is sent: an app's health
//! answer and drainit's own /status. Searching the text for
//! `"status":"healthy"` instead of reading it called
//! `{"status":"unhealthy","checks":[{"status":"healthy"}]}` healthy.

use serde_json::Value;

/// The top-level `status` values that mean healthy, compared ignoring
/// ASCII case: `healthy` and `ok` (common hand-written checks), `UP`
/// (Spring Boot's actuator), `pass` and `warn` (the IETF health-check
/// draft, application/health+json). Case does not carry meaning in any of
/// these conventions, and frameworks differ in it (ASP.NET says `Healthy`).
pub const HEALTHY: [&str; 5] = ["healthy", "ok", "up", "pass", "warn"];

/// `text` as the inside of a JSON string literal.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// One whole JSON document.
pub fn parse(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))
}

/// Whether `body` is a JSON object whose top-level `status` is one of
/// [`HEALTHY`]; otherwise why not, with the app's words quoted and escaped.
pub fn healthy(body: &str) -> Result<(), String> {
    let doc = parse(body).map_err(|e| format!("body is {e}"))?;
    match doc.get("status") {
        Some(Value::String(s)) if HEALTHY.iter().any(|h| h.eq_ignore_ascii_case(s)) => Ok(()),
        Some(Value::String(s)) => Err(format!(
            "body's status is {s:?}, not one of {}",
            HEALTHY.join(", ")
        )),
        _ if !doc.is_object() => Err("body is not a JSON object".into()),
        _ => Err("body has no top-level \"status\" string".into()),
    }
}

/// A top-level member of `doc` as text: a string as it is, any other
/// value as JSON (`7`, `null`); None when absent.
pub fn member(doc: &Value, key: &str) -> Option<String> {
    match doc.get(key)? {
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_quotes_and_control_characters() {
        assert_eq!(escape("said \"no\"\n\\"), "said \\\"no\\\"\\u000a\\\\");
    }

    #[test]
    fn reads_the_top_level_status_only() {
        for ok in [
            "{\"status\":\"healthy\"}",
            " { \"ok\":1, \"status\" :\"UP\" }\n",
            "{\"status\":\"pass\",\"checks\":{}}",
            "{\"status\":\"Warn\"}",
            "{\"status\":\"OK\"}",
        ] {
            assert_eq!(healthy(ok), Ok(()), "{ok}");
        }
        for bad in [
            "{\"status\":\"unhealthy\",\"checks\":[{\"status\":\"healthy\"}]}",
            "{\"checks\":[{\"status\":\"healthy\"}]}",
            "{\"status\":\"DOWN\"}",
            "{\"status\":true}",
            "[{\"status\":\"healthy\"}]",
            "{\"status\":\"healthy\"",
            "{\"status\":\"healthy\"}{}",
            "status healthy",
            "",
        ] {
            assert!(healthy(bad).is_err(), "{bad}");
        }
        let why = healthy("{\"status\":\"fail\\u001b[2J\"}").unwrap_err();
        assert!(why.contains("\"fail\\u{1b}[2J\""), "{why}");
    }

    #[test]
    fn reads_members_of_drainits_status() {
        let doc = parse("{\"state\":\"ready\",\"child_pid\":7,\"drain\":null}").unwrap();
        assert_eq!(member(&doc, "state").as_deref(), Some("ready"));
        assert_eq!(member(&doc, "child_pid").as_deref(), Some("7"));
        assert_eq!(member(&doc, "drain").as_deref(), Some("null"));
        assert_eq!(member(&doc, "nope"), None);
    }
}
