//! Prometheus/OpenMetrics text as the admin listener's `GET /metrics` serves it, parsed into
//! samples; any malformed line, or a missing `# EOF`, fails the test.

use crate::{Server, get};

/// Scrapes the admin listener's `/metrics` (which must answer 200) into samples.
pub async fn scrape(server: &Server) -> Vec<Sample> {
    let reply = get(server.admin.expect("admin API on"), "/metrics")
        .await
        .expect("GET /metrics");
    assert_eq!(reply.status, 200, "{}", reply.text());
    parse(&reply.text())
}

/// The value of the sample `name` for route `route` whose other labels include `labels`.
pub fn value(samples: &[Sample], name: &str, route: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.label("route") == Some(route)
                && labels.iter().all(|(k, v)| s.label(k) == Some(*v))
        })
        .map(|s| s.value)
}

/// One sample of a metrics scrape.
#[derive(Debug)]
pub struct Sample {
    /// The series as written: name and label set (`hotswap_reloads_total{route="a",…}`).
    pub series: String,
    /// The metric name.
    pub name: String,
    /// The labels, in the order written.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// The value of label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a scrape, keeping each sample's labels in order.
pub fn parse(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut saw_eof = false;
    for line in text.lines() {
        if line == "# EOF" {
            saw_eof = true;
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") || line.starts_with("# UNIT ")
        {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("malformed metrics line {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), Vec::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unterminated labels in {line:?}"));
                (name.to_string(), parse_labels(body, line))
            }
        };
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        samples.push(Sample {
            series: series.to_string(),
            name,
            labels,
            value,
        });
    }
    assert!(saw_eof, "no `# EOF` terminator");
    samples
}

/// `a="1",b="x\"y"` → `[(a, 1), (b, x"y)]`.
fn parse_labels(mut body: &str, line: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    while !body.is_empty() {
        let (key, rest) = body
            .split_once("=\"")
            .unwrap_or_else(|| panic!("bad labels in {line:?}"));
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(match escaped {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = end.unwrap_or_else(|| panic!("unterminated label value in {line:?}"));
        labels.push((key.to_string(), value));
        body = rest[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&rest[end + 1..]);
    }
    labels
}
