//! The JSON-lines control protocol of `bench/fanout/loadgen.py`: one request object per line on
//! stdin, exactly one reply object per request on stdout (`{"error": ...}` if it failed), except
//! `exit`, which ends the process without a reply.

use serde_json::{Map, Value};

#[derive(Debug, PartialEq)]
pub enum Request {
    Connect { url: String, count: usize, source_ip: String, concurrency: usize },
    Delivered { lo: u64, hi: u64 },
    Summarize { lo: u64, hi: u64 },
    Status,
    Exit,
}

fn field<'a>(args: &'a Map<String, Value>, name: &str) -> Result<&'a Value, String> {
    args.get(name).ok_or_else(|| format!("TypeError: missing argument {name:?}"))
}

fn unsigned(args: &Map<String, Value>, name: &str) -> Result<u64, String> {
    let value = field(args, name)?;
    value.as_u64().ok_or_else(|| format!("TypeError: {name} must be a non-negative integer, got {value}"))
}

fn count(args: &Map<String, Value>, name: &str) -> Result<usize, String> {
    usize::try_from(unsigned(args, name)?).map_err(|_| format!("ValueError: {name} is too large"))
}

fn text(args: &Map<String, Value>, name: &str) -> Result<String, String> {
    let value = field(args, name)?;
    value.as_str().map(str::to_owned).ok_or_else(|| format!("TypeError: {name} must be a string, got {value}"))
}

/// One request line, or the text of the error reply it gets.
pub fn parse(line: &str) -> Result<Request, String> {
    let value: Value = serde_json::from_str(line).map_err(|err| format!("JSONDecodeError: {err}"))?;
    let Value::Object(args) = value else {
        return Err(format!("TypeError: a request is a JSON object, got {line:?}"));
    };
    let op = text(&args, "op")?;
    match op.as_str() {
        "connect" => Ok(Request::Connect {
            url: text(&args, "url")?,
            count: count(&args, "count")?,
            source_ip: text(&args, "source_ip")?,
            concurrency: count(&args, "concurrency")?,
        }),
        "delivered" => Ok(Request::Delivered { lo: unsigned(&args, "lo")?, hi: unsigned(&args, "hi")? }),
        "summarize" => Ok(Request::Summarize { lo: unsigned(&args, "lo")?, hi: unsigned(&args, "hi")? }),
        "status" => Ok(Request::Status),
        "exit" => Ok(Request::Exit),
        "publish" => {
            Err("RuntimeError: lc-loadgen runs viewers only; the publisher is bench.fanout.loadgen".to_owned())
        }
        other => Err(format!("ValueError: unknown op {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::{parse, Request};

    #[test]
    fn parses_what_the_harness_sends() {
        let connect = r#"{"op": "connect", "url": "ws://127.0.0.1:19100/", "count": 3750, "source_ip": "127.0.10.1", "concurrency": 64}"#;
        assert_eq!(
            parse(connect).unwrap(),
            Request::Connect {
                url: "ws://127.0.0.1:19100/".to_owned(),
                count: 3750,
                source_ip: "127.0.10.1".to_owned(),
                concurrency: 64
            }
        );
        assert_eq!(parse(r#"{"op": "delivered", "lo": 0, "hi": 60}"#).unwrap(), Request::Delivered { lo: 0, hi: 60 });
        assert_eq!(
            parse(r#"{"op": "summarize", "lo": 60, "hi": 110}"#).unwrap(),
            Request::Summarize { lo: 60, hi: 110 }
        );
        assert_eq!(parse(r#"{"op": "status"}"#).unwrap(), Request::Status);
        assert_eq!(parse(r#"{"op": "exit"}"#).unwrap(), Request::Exit);
    }

    #[test]
    fn bad_requests_get_clear_errors() {
        assert!(parse("not json").unwrap_err().starts_with("JSONDecodeError"));
        assert!(parse("[1]").unwrap_err().contains("JSON object"));
        assert_eq!(parse(r#"{"op": "fly"}"#).unwrap_err(), r#"ValueError: unknown op "fly""#);
        assert!(parse(r#"{"op": "delivered", "lo": 0}"#).unwrap_err().contains("\"hi\""));
        assert!(parse(r#"{"op": "delivered", "lo": -1, "hi": 2}"#).unwrap_err().contains("non-negative"));
        assert!(parse(r#"{"op": "publish", "rate": 2}"#).unwrap_err().contains("viewers only"));
    }
}
